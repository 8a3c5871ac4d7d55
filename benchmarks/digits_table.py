"""The README results table: every method's default preset on the embedded digits.

For each method, runs exactly the README command (``python -m cl_jax.main
--config=configs/<method>.py --workdir=...``) in a fresh process, timing it end to end
(compilation, training and evaluation), reads the run's ``eval.json``, and adds one row with
the random-init baseline (``--config.total_steps=0``, the same for every method whose default
preset uses the same encoder). Prints a markdown table, writes JSON, and with ``--readme``
replaces the table between the ``<!-- digits-table -->`` markers of README.md.

    python benchmarks/digits_table.py                      # all methods
    python benchmarks/digits_table.py --methods=byol,simclr --readme
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKERS = ("<!-- digits-table -->", "<!-- /digits-table -->")
KEYS = ("knn_top1", "linear_top1", "fewshot_top1")


def available_methods():
    return sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "configs"))
                  if f.endswith(".py") and not f.startswith("_"))


def run(method, workdir, overrides=()):
    """Runs one README command; returns (eval.json contents, wall-clock seconds)."""
    command = [sys.executable, "-m", "cl_jax.main", f"--config=configs/{method}.py",
               f"--workdir={workdir}", *overrides]
    shutil.rmtree(workdir, ignore_errors=True)  # time a fresh run, not a resume
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    seconds = time.perf_counter() - start
    with open(os.path.join(workdir, "eval.json")) as f:
        return json.load(f), seconds


def row(name, results, seconds, steps):
    accuracies = [f"{results[k]:.3f}" for k in KEYS[:2]]
    fewshot = f"{results['fewshot_top1']:.3f} ± {results.get('fewshot_top1_std', 0.0):.3f}"
    return f"| {name} | {' | '.join(accuracies)} | {fewshot} | {steps} | {seconds:.0f} s |"


def table(rows):
    header = ("| method (digits preset) | kNN top-1 | linear top-1 | few-label linear top-1 "
              "(3/class, 5 draws) | steps | time, 2-core CPU |\n"
              "|---|---|---|---|---|---|")
    return "\n".join([header, *rows])


def update_readme(text_table):
    path = os.path.join(REPO, "README.md")
    with open(path) as f:
        readme = f.read()
    start, end = MARKERS
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {start} ... {end} markers.")
    readme = pattern.sub(lambda _: f"{start}\n{text_table}\n{end}", readme)
    with open(path, "w") as f:
        f.write(readme)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(available_methods()))
    parser.add_argument("--workdir", default=os.path.join(REPO, "runs", "digits_table"))
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "digits_table.json"))
    parser.add_argument("--readme", action="store_true", help="rewrite the README table")
    parser.add_argument("--overrides", default="",
                        help="extra --config.x=y flags for every run (e.g. for a quick check)")
    args = parser.parse_args()

    overrides = args.overrides.split()
    records, rows = [], []
    baseline, seconds = run("byol", os.path.join(args.workdir, "init"),
                            ["--config.total_steps=0", *overrides])
    records.append({"method": "random init", **baseline, "seconds": seconds})
    rows.append(row("random init (same encoder, 0 steps)", baseline, seconds, 0))
    for method in args.methods.split(","):
        workdir = os.path.join(args.workdir, method)
        results, seconds = run(method, workdir, overrides)
        records.append({"method": method, **results, "seconds": seconds})
        rows.append(row(method, results, seconds, results["step"]))
        print(rows[-1], flush=True)

    text = table(rows)
    print(text)
    with open(args.json, "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
                   "cpus": os.cpu_count(), "rows": records}, f, indent=1)
    if args.readme:
        update_readme(text)


if __name__ == "__main__":
    main()
