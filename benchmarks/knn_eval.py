"""Time and memory of the kNN evaluation, dense (one device) vs sharded, against N.

    python benchmarks/knn_eval.py                          # N = 10k, 30k, 100k; D = 2048
    python benchmarks/knn_eval.py --sizes=1000000 --dim=256
    python benchmarks/knn_eval.py --sizes=1000000 --source=device --runs=sharded:8
    python benchmarks/knn_eval.py --tiny                   # seconds, on any CPU

Synthetic features: N training rows and ``--test`` queries of dimension ``--dim``, standard
normal, labels uniform over ``--classes``. Each N is run once per entry of ``--runs``
(``impl:devices``): ``dense`` is ``knn_predict`` (the whole training matrix on one device),
``sharded`` is ``knn_predict_sharded`` over a mesh of ``devices`` devices. Every run is its own
process, so its peak RSS is its own; one with more devices than the default backend has runs
on that many forced CPU devices (``--xla_force_host_platform_device_count``), which share
the host's cores and memory: on a CPU the sharded runs show the per-device memory, not a
speed-up.

``--source=host``: the training features are a host NumPy array (what the evaluators get);
``device``: they are a global jax Array made one device's rows at a time (split by rows for
the sharded runs), so the host never holds all of them; the same numbers either way.

Columns: per-device memory of the compiled program that scores a chunk (``knn_predict`` for
dense: all chunks) from ``memory_analysis()``, arguments (the training rows a device holds)
and temporaries; the process's peak RSS (``resource.getrusage``, includes the host array and,
on a CPU, every device's buffers); the first call (with compilation) and the best of the later
ones, in seconds; and the fraction of predictions equal to the dense run's. Prints a table
and writes JSON.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cl_jax import parallel  # noqa: E402
from cl_jax.evaluation import knn  # noqa: E402

MIB = 2**20
BLOCK = 4096  # rows of the synthetic training set per random generator
FORCE_DEVICES = "--xla_force_host_platform_device_count"


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def mesh_devices(count):
    """``count`` devices of the default backend, else of the (forced) CPU backend."""
    for devices in (jax.devices(), jax.devices("cpu")):
        if len(devices) >= count:
            return devices[:count]
    raise SystemExit(f"{count} devices asked, {len(jax.devices('cpu'))} CPU devices present")


def synthetic_rows(start, stop, dim, classes):
    """Rows [start, stop) of the synthetic training set, (features, labels): N(0, 1) features,
    uniform labels, the same rows whichever range asks for them (one generator per block)."""
    features = np.empty((stop - start, dim), np.float32)
    labels = np.empty(stop - start, np.int32)
    for block in range(start // BLOCK, -(-stop // BLOCK)):
        rng = np.random.default_rng([0, block])
        lo, hi = max(start, block * BLOCK), min(stop, (block + 1) * BLOCK)
        offset = lo - block * BLOCK
        features[lo - start:hi - start] = rng.standard_normal((BLOCK, dim), np.float32)[
            offset:offset + hi - lo]
        labels[lo - start:hi - start] = rng.integers(0, classes, BLOCK)[offset:offset + hi - lo]
    return features, labels


def train_data(spec, mesh):
    """(features, labels): host NumPy arrays, or global jax Arrays built one device's rows at
    a time (for the sharded runs, split by rows), so the host never holds all of them."""
    n, dim, classes = spec["n"], spec["dim"], spec["classes"]
    if spec["source"] == "host":
        return synthetic_rows(0, n, dim, classes)
    if n % mesh.size:
        raise SystemExit(f"--source=device: N={n} must be a multiple of {mesh.size} devices")
    sharding = (knn.row_sharding(mesh) if spec["impl"] == "sharded"
                else SingleDeviceSharding(mesh.devices.flat[0]))

    def part(which, shape):
        arrays = []
        for device, index in sharding.addressable_devices_indices_map(shape).items():
            rows = synthetic_rows(*index[0].indices(n)[:2], dim, classes)[which]
            arrays.append(jax.device_put(rows, device).block_until_ready())
        return jax.make_array_from_single_device_arrays(shape, sharding, arrays)

    return part(0, (n, dim)), part(1, (n,))


def compiled_memory(spec, mesh, test):
    """(argument bytes, temporary bytes) per device of the program that scores a chunk."""
    n, dim, chunk, k = spec["n"], spec["dim"], spec["chunk_size"], min(spec["k"], spec["n"])
    if spec["impl"] == "dense":
        lowered = knn.knn_predict.lower(
            jax.ShapeDtypeStruct((n, dim), jnp.float32), jax.ShapeDtypeStruct((n,), jnp.int32),
            test, spec["classes"], k, 0.07, chunk_size=chunk)
    else:
        rows = knn.row_sharding(mesh)
        padded = -(-n // mesh.size) * mesh.size
        lowered = knn.predict_chunk_sharded.lower(
            jax.ShapeDtypeStruct((padded, dim), jnp.float32, sharding=rows),
            jax.ShapeDtypeStruct((padded,), jnp.float32, sharding=rows),
            jax.ShapeDtypeStruct((padded,), jnp.int32, sharding=rows),
            jax.ShapeDtypeStruct((chunk, dim), jnp.float32,
                                 sharding=NamedSharding(mesh, PartitionSpec())),
            jnp.float32(0.07), mesh=mesh, num_train=n, num_classes=spec["classes"], k=k)
    analysis = lowered.compile().memory_analysis()
    if analysis is None:
        return None, None
    return analysis.argument_size_in_bytes, analysis.temp_size_in_bytes


def worker(spec):
    """One run (one process): times ``spec``'s kNN evaluation; returns its JSON row."""
    mesh = parallel.create_mesh(mesh_devices(spec["devices"]))
    rss_start = peak_rss_bytes()
    x, y = train_data(spec, mesh)
    test = np.random.default_rng(1).standard_normal((spec["test"], spec["dim"]), np.float32)
    args = dict(num_classes=spec["classes"], k=spec["k"], temperature=0.07,
                chunk_size=spec["chunk_size"])
    if spec["impl"] == "dense":
        run = lambda: np.asarray(knn.knn_predict(x, y, test, **args))
    else:
        run = lambda: knn.knn_predict_sharded(x, y, test, mesh=mesh, **args)
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        predictions = run()
        times.append(time.perf_counter() - start)
    np.save(spec["predictions"], predictions)
    arg_bytes, temp_bytes = compiled_memory(spec, mesh, test)
    device = mesh.devices.flat[0]
    return {**spec, "platform": device.platform, "device_kind": device.device_kind,
            "first_s": times[0], "warm_s": min(times[1:]) if len(times) > 1 else None,
            "device_argument_bytes": arg_bytes, "device_temp_bytes": temp_bytes,
            "rss_start_bytes": rss_start, "peak_rss_bytes": peak_rss_bytes()}


def child_env(devices):
    """The environment with ``devices`` forced CPU devices (any earlier count replaced)."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(FORCE_DEVICES)]
    env["XLA_FLAGS"] = " ".join([*flags, f"{FORCE_DEVICES}={devices}"])
    return env


def run_child(spec, timeout):
    """``worker(spec)`` in a fresh process; its row, or the error it ended with."""
    command = [sys.executable, os.path.abspath(__file__), f"--worker={json.dumps(spec)}"]
    try:
        result = subprocess.run(command, env=child_env(spec["devices"]), capture_output=True,
                                text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout} s"}
    if result.returncode:
        lines = (result.stderr.strip() or f"exit status {result.returncode}").splitlines()
        return {**spec, "error": lines[-1][:200]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def agreement(row, dense_predictions):
    if dense_predictions is None or "error" in row:
        return None
    return float(np.mean(np.load(row["predictions"]) == dense_predictions))


def fmt(value, scale=1.0, digits=1):
    return "-" if value is None else f"{value / scale:,.{digits}f}"


def print_row(r):
    name = f"{r['impl']}:{r['devices']}"
    if "error" in r:
        print(f"{r['n']:>9,d} {name:>10} | {r['error']}", flush=True)
        return
    print(f"{r['n']:>9,d} {name:>10} {r['platform']:>5} | {fmt(r['device_argument_bytes'], MIB)}"
          f" {fmt(r['device_temp_bytes'], MIB):>10} {fmt(r['peak_rss_bytes'], MIB):>10} |"
          f" {fmt(r['first_s'], digits=2):>8} {fmt(r['warm_s'], digits=2):>8} |"
          f" {fmt(r['same_as_dense'], digits=4):>6}", flush=True)


def parse_runs(text):
    runs = []
    for item in text.split(","):
        impl, _, devices = item.strip().partition(":")
        if impl not in ("dense", "sharded") or not devices.isdigit():
            raise SystemExit(f"--runs: {item!r} is not dense:<devices> or sharded:<devices>")
        runs.append((impl, int(devices)))
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000",
                        help="comma-separated training-set sizes N (e.g. 1000000)")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--test", type=int, default=1024, help="number of test queries")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--runs", default="dense:1,sharded:1,sharded:8",
                        help="comma-separated impl:devices, impl dense or sharded")
    parser.add_argument("--source", choices=("host", "device"), default="host")
    parser.add_argument("--repeats", type=int, default=2, help="calls per run (first compiles)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per run")
    parser.add_argument("--tiny", action="store_true",
                        help="N = 1000, D = 16, 64 queries, 10 classes: checks that it runs")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "knn_eval.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return None
    if args.tiny:
        args.sizes, args.dim, args.test, args.classes, args.k = "1000", 16, 64, 10, 20
        args.chunk_size = 32
    runs = parse_runs(args.runs)
    print(f"kNN evaluation, D={args.dim}, {args.test} queries, k={args.k}, "
          f"{args.classes} classes, chunk {args.chunk_size}, features from {args.source}; "
          f"memory in MiB (device: per device), time in s")
    print(f"{'N':>9} {'run':>10} {'where':>5} | {'dev args':>8} {'dev temp':>10} "
          f"{'peak RSS':>10} | {'first':>8} {'warm':>8} | {'=dense':>6}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for n in (int(s) for s in args.sizes.split(",")):
            dense_predictions = None
            for impl, devices in runs:
                spec = {"n": n, "dim": args.dim, "test": args.test, "classes": args.classes,
                        "k": args.k, "chunk_size": args.chunk_size, "impl": impl,
                        "devices": devices, "source": args.source, "repeats": args.repeats,
                        "predictions": os.path.join(scratch, f"{n}-{impl}-{devices}.npy")}
                row = run_child(spec, args.timeout)
                if impl == "dense" and "error" not in row and dense_predictions is None:
                    dense_predictions = np.load(row["predictions"])
                row["same_as_dense"] = agreement(row, dense_predictions)
                row.pop("predictions")
                rows.append(row)
                print_row(row)
    report = {"host": platform.node(), "cpu_count": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d"), "args": vars(args), "results": rows}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
