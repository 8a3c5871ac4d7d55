"""The README results table: every method's default preset on the embedded digits, 3 seeds.

For each method and seed, runs the README command (``python -m cl_jax.main --config=<method>
--workdir=... --config.seed=<seed>``) in a fresh process, timing it end to end
(compilation, training and evaluation), and reads the run's ``eval.json``: the test split,
scored once, at the end (the presets train on 'minitrain'; 'minival' is the split for
evaluation during a run and for tuning). The random-init baseline is the BYOL default with
``--config.total_steps=0`` (the same encoder as every method's default), per seed; a method
of ``OWN_NETWORK`` (whose network is not that encoder: CMC's encoder per view, CPC's patches
through a LayerNorm encoder) also gets a row of its own at 0 steps, "random init (cmc)".

Each run is saved to ``benchmarks/digits_table.json`` as it finishes, with the package
versions, the commit and the machine (a run is a function of its config, its seed and the
installed packages); a (method, seed) run again replaces its record. The table gives, per
method, the mean ± sample standard deviation over its seeds of each column; with
``--readme`` it replaces the table between the ``<!-- digits-table -->`` markers of README.md.

    python benchmarks/digits_table.py                      # all methods, seeds 0, 1, 2
    python benchmarks/digits_table.py --methods=byol,simclr --seeds=0 --readme
    python benchmarks/digits_table.py --skip_done          # only the runs not yet recorded
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
# Methods whose evaluated network differs from the shared encoder: each gets its own
# random-init row, the baseline its README row must beat.
OWN_NETWORK = ("cmc", "cpc")


def random_init_of(method):
    """The config a "random init" row runs at 0 steps: BYOL's (the shared encoder), or the
    method's own for "random init (cmc)"."""
    return method[len("random init ("):-1] if method.startswith("random init (") else "byol"


def with_random_inits(methods):
    """The table's rows for ``methods``: random init first, and each ``OWN_NETWORK`` method
    preceded by its own random init."""
    rows = ["random init"]
    for method in methods:
        rows += [f"random init ({method})", method] if method in OWN_NETWORK else [method]
    return rows


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


def versions():
    """What a run's numbers depend on besides its config and seed."""
    import importlib.metadata as metadata

    found = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "flax", "optax", "numpy", "tensorflow-cpu", "tensorflow",
                    "scikit-learn", "ml-collections"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def commit():
    """The checkout's commit, with "+changes" when the tracked files (but the table's own
    JSON, which the runs write) differ from it."""
    git = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
    head = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
    changed = git("status", "--porcelain", "-uno", "--", ".",
                  ":!benchmarks/digits_table.json").stdout.strip()
    return head + ("+changes" if changed else "")


def mean_std(values):
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def cell(values, digits=3):
    mean, std = mean_std(values)
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def row(runs):
    """One method's row: mean ± std over its runs (seeds) of every column."""
    name = runs[0]["method"]
    if name == "random init":
        name = "random init (same encoder, 0 steps)"
    elif name.startswith("random init ("):
        name = f"random init ({random_init_of(name)}'s network, 0 steps)"
    scores = [cell([r[k] for r in runs]) for k in KEYS]
    seconds = f"{mean_std([r['seconds'] for r in runs])[0]:.0f} s"
    seeds = ", ".join(str(r["seed"]) for r in runs)
    return (f"| {name} | {' | '.join(scores)} | {seeds} | {runs[0]['step']} | {seconds} "
            f"| {max(r['date'] for r in runs)} |")


def grouped(records):
    """The records by method, in the table's order (random init, then the configs')."""
    order = with_random_inits(available_methods())
    methods = sorted({r["method"] for r in records},
                     key=lambda m: order.index(m) if m in order else len(order))
    return [sorted((r for r in records if r["method"] == m), key=lambda r: r["seed"])
            for m in methods]


def table(records):
    header = ("| method (digits preset) | kNN top-1 | linear top-1 | few-label linear top-1 "
              "(3/class, 5 draws) | seeds | steps | time per run, 2-core CPU | measured |\n"
              "|---|---|---|---|---|---|---|---|")
    return "\n".join([header, *(row(runs) for runs in grouped(records))])


def load(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f).get("runs", [])


def save(path, records):
    with open(path, "w") as f:
        json.dump({"runs": records}, f, indent=1)


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


def publish(text_table, records, json_path, readme, markers, key="rows"):
    """Prints the table, writes the records to ``json_path`` (under ``key``) and, with
    ``readme``, the table into README.md between ``markers``."""
    print(text_table)
    with open(json_path, "w") as f:
        json.dump({key: records}, f, indent=1)
    if readme:
        update_readme(text_table, markers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(available_methods()))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workdir", default=os.path.join(REPO, "runs", "digits_table"))
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "digits_table.json"))
    parser.add_argument("--readme", action="store_true", help="rewrite the README table")
    parser.add_argument("--skip_done", action="store_true",
                        help="keep the recorded (method, seed) runs instead of running them")
    parser.add_argument("--overrides", default="",
                        help="extra --config.x=y flags for every run (e.g. for a quick check)")
    args = parser.parse_args()

    overrides = args.overrides.split()
    machine = f"{platform.platform()}, {os.cpu_count()} CPUs"
    records = load(args.json)
    # Seed by seed, so that a table stopped half-way has every method at the first seeds.
    methods = with_random_inits(args.methods.split(","))
    runs = [(method, seed) for seed in map(int, args.seeds.split(",")) for method in methods]
    for method, seed in runs:
        done = [r for r in records if (r["method"], r["seed"]) == (method, seed)]
        if args.skip_done and done:
            continue
        config, extra = (random_init_of(method), ["--config.total_steps=0"]) \
            if method.startswith("random init") else (method, [])
        slug = re.sub(r"\W+", "_", method).strip("_")
        folder = os.path.join(args.workdir, f"{slug}_seed{seed}")
        flags = [f"--config.seed={seed}", *overrides, *extra]  # random init: 0 steps
        results, seconds = run(config, folder, flags)
        records = [r for r in records if r not in done]
        records.append({"method": method, "seed": seed, **results, "seconds": seconds,
                        "date": time.strftime("%Y-%m-%d"), "machine": machine,
                        "load_average": os.getloadavg()[0], "commit": commit(),
                        "versions": versions(), "overrides": " ".join(overrides)})
        save(args.json, records)  # a stopped table keeps what it has measured
        print(f"{method} seed {seed}: " + ", ".join(f"{k} {results[k]:.4f}" for k in KEYS)
              + f", {seconds:.0f} s", flush=True)
    publish(table(records), records, args.json, args.readme, MARKERS, key="runs")


if __name__ == "__main__":
    main()
