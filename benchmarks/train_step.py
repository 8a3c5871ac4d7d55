"""Images/s of the jitted train step on synthetic data (no TensorFlow needed).

    python benchmarks/train_step.py                       # SimCLR and BYOL, R18@32 and R50@224
    python benchmarks/train_step.py --batch=512 --steps=20
    python benchmarks/train_step.py --tiny                # seconds, on any CPU

For each (method, backbone@resolution) it builds the method and optimiser from the method's
config file (preset ``cifar10`` for ``resnet18@32``, ``imagenet`` for ``resnet50@224``), jits
the real train step with the state donated, runs ``--warmup`` steps, then times ``--steps``
steps. Prints a table and writes JSON.
"""

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from cl_jax import config_lib, parallel  # noqa: E402
from cl_jax.state import create_method_and_optimizer, init_train_state, make_train_step  # noqa: E402

PRESET_OF = {"resnet18": "cifar10", "resnet50": "imagenet", "convnet": "digits"}


def benchmark(method, model, size, batch, steps, warmup, mesh):
    config = config_lib.load_config_file(
        os.path.join(REPO, "configs", f"{method}.py:{PRESET_OF[model]}"))
    config.batch_size = batch
    config.model.encoder = model
    channels = 1 if model == "convnet" else 3
    method_obj, schedule, tx = create_method_and_optimizer(config, 0, total_steps=1000,
                                                           steps_per_epoch=100)
    replicated = parallel.replicated(mesh)
    sample = jnp.zeros((2, size, size, channels))
    state = jax.jit(lambda rng: init_train_state(method_obj, tx, rng, sample),
                    out_shardings=replicated)(jax.random.key(0))
    rng = np.random.RandomState(0)
    host = {"views": tuple(rng.randn(batch, size, size, channels).astype(np.float32)
                           for _ in range(2)),
            "label": np.zeros((batch,), np.int32)}
    batch_arrays = parallel.to_global(host, mesh)
    step = jax.jit(make_train_step(method_obj, tx, schedule, 0),
                   in_shardings=(replicated, parallel.batch_sharding(mesh)),
                   out_shardings=(replicated, replicated), donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(state, batch_arrays).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis() or {}
    for _ in range(warmup):
        state, metrics = compiled(state, batch_arrays)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = compiled(state, batch_arrays)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    step_s = float(np.median(times))
    return {"method": method, "model": model, "image_size": size, "batch": batch,
            "step_ms": 1000 * step_s, "images_per_s": batch / step_s,
            "compile_s": compile_s, "flops_per_step": float(cost.get("flops", 0.0)),
            "loss": float(metrics["loss"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="simclr,byol")
    parser.add_argument("--models", default="resnet18@32,resnet50@224",
                        help="comma-separated backbone@resolution")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tiny", action="store_true",
                        help="convnet@8, batch 16, 2 steps: checks that it runs")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "train_step.json"))
    args = parser.parse_args(argv)
    if args.tiny:
        args.models, args.batch, args.steps, args.warmup = "convnet@8", 16, 2, 1
    mesh = parallel.create_mesh()
    rows = []
    for method in args.methods.split(","):
        for spec in args.models.split(","):
            model, size = spec.split("@")
            rows.append(benchmark(method, model, int(size), args.batch, args.steps, args.warmup,
                                  mesh))
            r = rows[-1]
            print(f"{r['method']:8s} {r['model']:9s} {r['image_size']:4d}px batch {r['batch']:5d}"
                  f" | {r['step_ms']:9.1f} ms/step | {r['images_per_s']:9.1f} images/s"
                  f" | compile {r['compile_s']:.1f} s", flush=True)
    device = jax.devices()[0]
    report = {"device": device.device_kind, "platform": device.platform,
              "device_count": jax.device_count(), "host": platform.node(),
              "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"), "results": rows}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
