"""Memory and time of NT-Xent's value-and-gradient, dense vs blockwise (no TensorFlow needed).

    python benchmarks/loss_memory.py                          # N = 4096 ... 65536, D = 128
    python benchmarks/loss_memory.py --sizes=4096,16384 --block-size=512
    python benchmarks/loss_memory.py --tiny                   # seconds, on any CPU

For each batch size N (two views: the similarity matrix is 2N x 2N) it compiles
``jax.value_and_grad(nt_xent)`` w.r.t. both views, dense (``block_size=None``) and blockwise,
and reads the compiled program's temporary memory (``memory_analysis().temp_size_in_bytes``,
the XLA buffers besides inputs and outputs). Compiling needs no memory for the data, so that
column is filled for every size. Sizes up to ``--no-time-above`` (default: 8192 on CPU,
unlimited on accelerators) are also run: median milliseconds over ``--repeats`` runs after
``--warmup``; a run that fails (out of memory) is recorded as such. Prints a table and
writes JSON.
"""

import argparse
import functools
import json
import os
import platform
import sys
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cl_jax.losses.contrastive import nt_xent  # noqa: E402

MIB = 2**20


def temp_bytes(compiled):
    """The compiled program's temporary memory in bytes, or None where the backend has none."""
    try:
        analysis = compiled.memory_analysis()
    except NotImplementedError:
        return None
    return None if analysis is None else analysis.temp_size_in_bytes


def first_line(error):
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:160]}"


def measure(n, dim, block_size, run, repeats, warmup):
    """One size: compile (and, if ``run``, time) dense and blockwise. Returns a JSON row."""
    row = {
        "n": n,
        "views": 2 * n,
        "dim": dim,
        "block_size": block_size,
        "matrix_bytes": (2 * n) ** 2 * 4,
    }
    spec = jax.ShapeDtypeStruct((n, dim), np.float32)
    data = None
    for variant, size in (("dense", None), ("blockwise", block_size)):
        loss = functools.partial(nt_xent, temperature=0.1, block_size=size)
        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        result = row[variant] = {}
        try:
            start = time.perf_counter()
            compiled = step.lower(spec, spec).compile()
            result["compile_s"] = time.perf_counter() - start
            result["temp_bytes"] = temp_bytes(compiled)
            if not run:
                continue
            if data is None:
                rng = np.random.RandomState(0)
                data = [
                    jax.device_put(rng.normal(size=(n, dim)).astype(np.float32)) for _ in range(2)
                ]
            for _ in range(warmup):
                jax.block_until_ready(compiled(*data))
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                value, _ = jax.block_until_ready(compiled(*data))
                times.append(time.perf_counter() - start)
            result["ms"] = 1000 * float(np.median(times))
            result["loss"] = float(value)
        except Exception as error:  # out of memory, at compile or run time
            result["error"] = first_line(error)
    if "loss" in row["dense"] and "loss" in row["blockwise"]:
        row["loss_rel_diff"] = abs(row["dense"]["loss"] / row["blockwise"]["loss"] - 1)
    return row


def fmt_mib(nbytes):
    return "n/a" if nbytes is None else f"{nbytes / MIB:,.1f}"


def print_row(r):
    dense, block = r["dense"], r["blockwise"]
    ratio = (
        ""
        if not dense.get("temp_bytes") or not block.get("temp_bytes")
        else f"{dense['temp_bytes'] / block['temp_bytes']:.0f}x"
    )
    notes = "; ".join(
        f"{k}: {v['error']}" for k, v in (("dense", dense), ("blockwise", block)) if "error" in v
    )
    if "loss_rel_diff" in r:
        notes = f"loss rel. diff {r['loss_rel_diff']:.1e}" + (f"; {notes}" if notes else "")
    ms = lambda v: f"{v['ms']:,.1f}" if "ms" in v else "-"
    print(
        f"{r['n']:>7,d} {fmt_mib(r['matrix_bytes']):>12} | {fmt_mib(dense.get('temp_bytes')):>12}"
        f" {fmt_mib(block.get('temp_bytes')):>12} {ratio:>6} | {ms(dense):>10} {ms(block):>10}"
        f" | {notes}",
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="4096,8192,16384,32768,65536",
        help="comma-separated batch sizes N (2N views)",
    )
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument(
        "--no-time-above",
        type=int,
        default=None,
        help="only compile (no run) above this N; default 8192 on CPU, else all",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--tiny", action="store_true", help="N = 128, 256, D = 16, block 64: checks that it runs"
    )
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "loss_memory.json"))
    args = parser.parse_args(argv)
    if args.tiny:
        args.sizes, args.dim, args.block_size, args.repeats = "128,256", 16, 64, 2
    device = jax.devices()[0]
    limit = args.no_time_above
    if limit is None:
        limit = 8192 if device.platform == "cpu" else sys.maxsize
    print(
        f"nt_xent value_and_grad, D={args.dim}, block_size={args.block_size}, "
        f"{device.platform} ({device.device_kind}); memory in MiB, time in ms"
    )
    print(
        f"{'N':>7} {'2Nx2N f32':>12} | {'dense temp':>12} {'block temp':>12} {'ratio':>6} |"
        f" {'dense ms':>10} {'block ms':>10} | notes"
    )
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(n, args.dim, args.block_size, n <= limit, args.repeats, args.warmup))
        print_row(rows[-1])
    report = {
        "device": device.device_kind,
        "platform": device.platform,
        "host": platform.node(),
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "dim": args.dim,
        "block_size": args.block_size,
        "no_time_above": limit,
        "results": rows,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
