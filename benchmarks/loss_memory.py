"""Memory and time of contrastive losses' value and gradient, dense vs blockwise vs ring (no TF).

    python benchmarks/loss_memory.py                          # nt_xent, N = 4096 ... 65536, D = 128
    python benchmarks/loss_memory.py --sizes=4096,16384 --block-size=512
    python benchmarks/loss_memory.py --losses=clip,siglip --devices=8   # 8 forced CPU devices
    python benchmarks/loss_memory.py --tiny                   # seconds, on any CPU

``nt_xent`` (the default): for each batch size N (two views: the similarity matrix is
2N x 2N) it compiles ``jax.value_and_grad(nt_xent)`` w.r.t. both views on one device, dense
(``block_size=None``) and blockwise. ``clip`` and ``siglip`` (N image-text pairs: the logits are
N x N): the value and gradient w.r.t. both embeddings and the scalars (logit scale, SigLIP's
bias) on a mesh of ``--devices`` devices, in three forms: dense and blockwise under ``jit`` with
the pairs sharded over the devices (``P('data')``, scalars replicated), and the ring
(``clip_ring`` / ``siglip_ring`` inside ``jax.shard_map``).

For each program it reads the compiled temporary memory (``memory_analysis()
.temp_size_in_bytes``, the XLA buffers besides inputs and outputs). For a program partitioned
over several devices the analysis is of the one per-device program: its
``argument_size_in_bytes``, also recorded for clip and siglip, is one device's shard of the
embeddings (``2 N D 4 / devices`` bytes) plus the scalars. Compiling needs no memory for the
data, so that column is filled for every size. Sizes up to ``--no-time-above`` (default: 8192
on CPU, unlimited on accelerators) are also run: median milliseconds over ``--repeats`` runs
after ``--warmup``; a run that fails (out of memory) is recorded as such. Prints a table and
writes JSON.

``--devices=K`` makes K host (CPU) devices (``--xla_force_host_platform_device_count``,
set in ``XLA_FLAGS`` before jax is imported) and uses the first K devices; 0 (the default)
uses all devices as they are.
"""

import argparse
import functools
import json
import os
import platform
import re
import sys
import time


def force_host_devices(argv):
    """``--devices=K`` (K > 0) in ``argv``: asks XLA for K host devices, which it reads from
    ``XLA_FLAGS`` when jax starts (so this runs before jax is imported)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--devices", type=int, default=0)
    count = parser.parse_known_args(argv)[0].devices
    if count > 0:
        flag = "--xla_force_host_platform_device_count"
        flags = re.sub(rf"{flag}=\S*", "", os.environ.get("XLA_FLAGS", "")).strip()
        os.environ["XLA_FLAGS"] = f"{flags} {flag}={count}".strip()


if __name__ == "__main__":
    force_host_devices(sys.argv[1:])

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cl_jax.losses import image_text  # noqa: E402
from cl_jax.losses.contrastive import nt_xent  # noqa: E402

MIB = 2**20
LOSSES = ("nt_xent", "clip", "siglip")
# logit_scale (and logit_bias): CLIP's initial 1/0.07 (Radford et al. 2021), SigLIP's t = 10,
# b = -10 (Zhai et al. 2023).
SCALARS = {"clip": (1 / 0.07,), "siglip": (10.0, -10.0)}
IMAGE_TEXT_FORMS = ("dense", "blockwise", "ring")


def memory_of(compiled):
    """The compiled program's memory analysis, or None where the backend has none."""
    try:
        return compiled.memory_analysis()
    except NotImplementedError:
        return None


def first_line(error):
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:160]}"


def compile_and_time(step, specs, make_data, run, repeats, warmup):
    """Compiles ``step`` for ``specs`` and, if ``run``, times it on ``make_data()``: a JSON dict
    (``compile_s``, ``temp_bytes``, ``argument_bytes``; ``ms``, ``loss``; or ``error``)."""
    result = {}
    try:
        start = time.perf_counter()
        compiled = step.lower(*specs).compile()
        result["compile_s"] = time.perf_counter() - start
        analysis = memory_of(compiled)
        result["temp_bytes"] = None if analysis is None else analysis.temp_size_in_bytes
        result["argument_bytes"] = None if analysis is None else analysis.argument_size_in_bytes
        if not run:
            return result
        data = make_data()
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
    return result


def measure(n, dim, block_size, run, repeats, warmup):
    """nt_xent at one size: compile (and, if ``run``, time) dense and blockwise. A JSON row."""
    row = {
        "loss_fn": "nt_xent",
        "n": n,
        "views": 2 * n,
        "dim": dim,
        "block_size": block_size,
        "matrix_bytes": (2 * n) ** 2 * 4,
    }
    spec = jax.ShapeDtypeStruct((n, dim), np.float32)
    data = []

    def make_data():
        if not data:
            rng = np.random.RandomState(0)
            data.extend(
                jax.device_put(rng.normal(size=(n, dim)).astype(np.float32)) for _ in range(2)
            )
        return data

    for variant, size in (("dense", None), ("blockwise", block_size)):
        loss = functools.partial(nt_xent, temperature=0.1, block_size=size)
        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        row[variant] = compile_and_time(step, (spec, spec), make_data, run, repeats, warmup)
        row[variant].pop("argument_bytes", None)
    if "loss" in row["dense"] and "loss" in row["blockwise"]:
        row["loss_rel_diff"] = abs(row["dense"]["loss"] / row["blockwise"]["loss"] - 1)
    return row


def image_text_steps(name, mesh, block_size):
    """``jit(value_and_grad)`` of ``clip`` or ``siglip`` w.r.t. the embeddings and scalars,
    embeddings sharded over ``mesh`` (gradients too), the value and scalars replicated: dense,
    blockwise and the ring in ``shard_map``."""
    loss, ring = getattr(image_text, name), getattr(image_text, f"{name}_ring")
    num_args = 2 + len(SCALARS[name])
    specs = (P("data"), P("data")) + (P(),) * (num_args - 2)
    shardings = tuple(NamedSharding(mesh, spec) for spec in specs)
    in_ring = jax.shard_map(
        lambda *args: ring(*args, "data"), mesh=mesh, in_specs=specs, out_specs=P()
    )
    forms = (loss, functools.partial(loss, block_size=block_size), in_ring)
    return {
        form: jax.jit(
            jax.value_and_grad(f, argnums=tuple(range(num_args))),
            in_shardings=shardings,
            out_shardings=(NamedSharding(mesh, P()), shardings),
        )
        for form, f in zip(IMAGE_TEXT_FORMS, forms, strict=True)
    }, shardings


def measure_image_text(name, n, dim, block_size, mesh, run, repeats, warmup):
    """clip or siglip at N = ``n`` pairs: compile (and, if ``run``, time) dense, blockwise and
    ring on ``mesh``. A JSON row; memory is per device."""
    devices = mesh.devices.size
    row = {
        "loss_fn": name,
        "n": n,
        "dim": dim,
        "block_size": block_size,
        "devices": devices,
        "matrix_bytes": n * n * 4,
        "shard_bytes": 2 * n * dim * 4 // devices,
    }
    steps, shardings = image_text_steps(name, mesh, block_size)
    specs = [jax.ShapeDtypeStruct((n, dim), np.float32)] * 2
    specs += [jax.ShapeDtypeStruct((), np.float32)] * len(SCALARS[name])
    data = []

    def make_data():
        if not data:
            rng = np.random.RandomState(0)
            host = [rng.normal(size=(n, dim)).astype(np.float32) for _ in range(2)]
            host += [np.float32(s) for s in SCALARS[name]]
            data.extend(jax.device_put(x, s) for x, s in zip(host, shardings, strict=True))
        return data

    for form, step in steps.items():
        row[form] = compile_and_time(step, specs, make_data, run, repeats, warmup)
    losses = [row[form]["loss"] for form in IMAGE_TEXT_FORMS if "loss" in row[form]]
    if len(losses) == len(IMAGE_TEXT_FORMS):
        row["loss_rel_diff"] = max(abs(x / losses[0] - 1) for x in losses[1:])
    return row


def fmt_mib(nbytes):
    return "n/a" if nbytes is None else f"{nbytes / MIB:,.1f}"


def fmt_ms(result):
    return f"{result['ms']:,.1f}" if "ms" in result else "-"


def notes_of(r, forms):
    notes = "; ".join(f"{k}: {r[k]['error']}" for k in forms if "error" in r[k])
    if "loss_rel_diff" in r:
        notes = f"loss rel. diff {r['loss_rel_diff']:.1e}" + (f"; {notes}" if notes else "")
    return notes


def print_row(r):
    dense, block = r["dense"], r["blockwise"]
    ratio = (
        ""
        if not dense.get("temp_bytes") or not block.get("temp_bytes")
        else f"{dense['temp_bytes'] / block['temp_bytes']:.0f}x"
    )
    print(
        f"{r['n']:>7,d} {fmt_mib(r['matrix_bytes']):>12} | {fmt_mib(dense.get('temp_bytes')):>12}"
        f" {fmt_mib(block.get('temp_bytes')):>12} {ratio:>6} | {fmt_ms(dense):>10}"
        f" {fmt_ms(block):>10} | {notes_of(r, ('dense', 'blockwise'))}",
        flush=True,
    )


def print_image_text_header(name, args, devices, device):
    print(
        f"{name} value_and_grad, D={args.dim}, block_size={args.block_size}, {devices} x "
        f"{device.platform} ({device.device_kind}), pairs sharded over the devices; memory "
        "per device in MiB, time in ms"
    )
    print(
        f"{'N':>7} {'NxN f32':>10} {'/device':>9} | {'dense temp':>10} {'block temp':>10}"
        f" {'ring temp':>10} | {'dense ms':>9} {'block ms':>9} {'ring ms':>9} | notes"
    )


def print_image_text_row(r):
    temps = " ".join(f"{fmt_mib(r[f].get('temp_bytes')):>10}" for f in IMAGE_TEXT_FORMS)
    times = " ".join(f"{fmt_ms(r[f]):>9}" for f in IMAGE_TEXT_FORMS)
    per_device = r["matrix_bytes"] // r["devices"]
    print(
        f"{r['n']:>7,d} {fmt_mib(r['matrix_bytes']):>10} {fmt_mib(per_device):>9} | {temps} |"
        f" {times} | {notes_of(r, IMAGE_TEXT_FORMS)}",
        flush=True,
    )


def run_nt_xent(sizes, args, device, limit):
    print(
        f"nt_xent value_and_grad, D={args.dim}, block_size={args.block_size}, "
        f"{device.platform} ({device.device_kind}); memory in MiB, time in ms"
    )
    print(
        f"{'N':>7} {'2Nx2N f32':>12} | {'dense temp':>12} {'block temp':>12} {'ratio':>6} |"
        f" {'dense ms':>10} {'block ms':>10} | notes"
    )
    rows = []
    for n in sizes:
        rows.append(measure(n, args.dim, args.block_size, n <= limit, args.repeats, args.warmup))
        print_row(rows[-1])
    return rows


def run_image_text(name, sizes, args, mesh, limit):
    print_image_text_header(name, args, mesh.devices.size, mesh.devices.flat[0])
    rows = []
    for n in sizes:
        rows.append(
            measure_image_text(
                name, n, args.dim, args.block_size, mesh, n <= limit, args.repeats, args.warmup
            )
        )
        print_image_text_row(rows[-1])
    return rows


def select_devices(count):
    """The first ``count`` devices (all if 0); exits if there are fewer."""
    devices = jax.devices()
    if count > len(devices):
        raise SystemExit(
            f"--devices={count}: only {len(devices)} {devices[0].platform} devices; on a CPU "
            "run the script itself (it sets --xla_force_host_platform_device_count before "
            "jax starts), or set that flag in XLA_FLAGS"
        )
    return devices[:count] if count else devices


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--losses", default="nt_xent", help=f"comma-separated, of {', '.join(LOSSES)}"
    )
    parser.add_argument(
        "--sizes",
        default="4096,8192,16384,32768,65536",
        help="comma-separated batch sizes N (nt_xent: 2N views; clip, siglip: N pairs)",
    )
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument(
        "--devices",
        type=int,
        default=0,
        help="clip, siglip: on the first K devices (K forced host devices on a CPU); 0: all",
    )
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
    losses = args.losses.split(",")
    if not set(losses) <= set(LOSSES):
        raise SystemExit(f"--losses: {args.losses!r}, choose from {', '.join(LOSSES)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    devices = select_devices(args.devices)
    if set(losses) - {"nt_xent"} and any(n % len(devices) for n in sizes):
        raise SystemExit(f"--sizes: each N must be a multiple of the {len(devices)} devices")
    mesh = Mesh(np.array(devices), ("data",))
    device = devices[0]
    limit = args.no_time_above
    if limit is None:
        limit = 8192 if device.platform == "cpu" else sys.maxsize
    rows = []
    for name in losses:
        if name == "nt_xent":
            rows += run_nt_xent(sizes, args, device, limit)
        else:
            rows += run_image_text(name, sizes, args, mesh, limit)
    report = {
        "device": device.device_kind,
        "platform": device.platform,
        "devices": len(devices),
        "device_count": jax.device_count(),
        "host": platform.node(),
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "losses": losses,
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
