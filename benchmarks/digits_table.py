"""The README results table: every method's default preset on the embedded digits.

For each method, runs the README command (``python -m cl_jax.main --config=<method>
--workdir=...``) in a fresh process, timing it end to end
(compilation, training and evaluation), reads the run's ``eval.json``, and adds one row with
the random-init baseline (``--config.total_steps=0``, the same for every method whose default
preset uses the same encoder). The rows are merged into ``benchmarks/digits_table.json``
(a method run again replaces its row, the others stay, each with its date), the whole table
is printed, and with ``--readme`` it replaces the table between the
``<!-- digits-table -->`` markers of README.md.

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
    """The configs whose default preset is the embedded digits (not the image-text ones)."""
    from cl_jax import config_lib

    return [name for name in config_lib.config_names()
            if config_lib.load_config_module(name).PRESETS[0] == "digits"]


def run(config, workdir, overrides=()):
    """Runs one README command (``config``: a config's name, e.g. ``byol``); returns
    (eval.json contents, wall-clock seconds)."""
    command = [sys.executable, "-m", "cl_jax.main", f"--config={config}",
               f"--workdir={workdir}", *overrides]
    shutil.rmtree(workdir, ignore_errors=True)  # time a fresh run, not a resume
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    seconds = time.perf_counter() - start
    with open(os.path.join(workdir, "eval.json")) as f:
        return json.load(f), seconds


def run_rows(runs, workdir, row_of, previous=None):
    """Runs ``(name, config, folder, overrides)`` README commands one after another in
    ``workdir/folder``, printing each ``row_of(record)`` as it finishes; a folder that is a
    key of ``previous`` reuses that record instead of running again. Returns the records."""
    date, machine = time.strftime("%Y-%m-%d"), f"{platform.platform()}, {os.cpu_count()} CPUs"
    records = []
    for name, config, folder, overrides in runs:
        if previous is not None and folder in previous:
            records.append(previous[folder])
            continue
        results, seconds = run(config, os.path.join(workdir, folder), overrides)
        records.append({"name": name, "folder": folder, **results, "seconds": seconds,
                        "date": date, "machine": machine})
        print(row_of(records[-1]), flush=True)
    return records


def row(record):
    accuracies = [f"{record[k]:.3f}" for k in KEYS[:2]]
    fewshot = f"{record['fewshot_top1']:.3f} ± {record.get('fewshot_top1_std', 0.0):.3f}"
    seconds = f"{record['seconds']:.0f} s" if record.get("seconds") else "—"
    name = record["method"]
    if name == "random init":
        name = "random init (same encoder, 0 steps)"
    return (f"| {name} | {' | '.join(accuracies)} | {fewshot} | {record['step']} | {seconds} "
            f"| {record['date']} |")


def table(records):
    header = ("| method (digits preset) | kNN top-1 | linear top-1 | few-label linear top-1 "
              "(3/class, 5 draws) | steps | time, 2-core CPU | measured |\n"
              "|---|---|---|---|---|---|---|")
    return "\n".join([header, *(row(r) for r in records)])


def merge(path, new_records):
    """The records in ``path`` with ``new_records`` replacing those of the same method."""
    old = []
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)["rows"]
    by_method = {r["method"]: r for r in old}
    by_method.update({r["method"]: r for r in new_records})
    order = ["random init", *available_methods()]
    return sorted(by_method.values(),
                  key=lambda r: order.index(r["method"]) if r["method"] in order else 99)


def update_readme(text_table, markers=MARKERS):
    """Replaces the README's text between ``markers`` with ``text_table``."""
    path = os.path.join(REPO, "README.md")
    with open(path) as f:
        readme = f.read()
    start, end = markers
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {start} ... {end} markers.")
    readme = pattern.sub(lambda _: f"{start}\n{text_table}\n{end}", readme)
    with open(path, "w") as f:
        f.write(readme)


def publish(text_table, records, json_path, readme, markers):
    """Prints the table, writes the records to ``json_path`` and, with ``readme``, the table
    into README.md between ``markers``."""
    print(text_table)
    with open(json_path, "w") as f:
        json.dump({"rows": records}, f, indent=1)
    if readme:
        update_readme(text_table, markers)


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
    date, machine = time.strftime("%Y-%m-%d"), f"{platform.platform()}, {os.cpu_count()} CPUs"
    records = []
    for method in ["random init", *args.methods.split(",")]:
        if method == "random init":
            results, seconds = run("byol", os.path.join(args.workdir, "init"),
                                   ["--config.total_steps=0", *overrides])
        else:
            results, seconds = run(method, os.path.join(args.workdir, method), overrides)
        records.append({"method": method, **results, "seconds": seconds, "date": date,
                        "machine": machine, "overrides": " ".join(overrides)})
        print(row(records[-1]), flush=True)

    records = merge(args.json, records)
    text = table(records)
    print(text)
    with open(args.json, "w") as f:
        json.dump({"rows": records}, f, indent=1)
    if args.readme:
        update_readme(text)


if __name__ == "__main__":
    main()
