"""Images/s of the jitted train step on synthetic data (no TensorFlow needed).

    python benchmarks/train_step.py                       # SimCLR and BYOL, R18@32 and R50@224
    python benchmarks/train_step.py --batch=512 --steps=20 --dtype=bfloat16
    python benchmarks/train_step.py --tiny                # seconds, on any CPU

For each (method, backbone@resolution) it builds the method and optimiser from the method's
config file (preset ``cifar10`` for ``resnet18@32``, ``imagenet`` for ``resnet50@224``), jits
the real train step with the state donated (``_common.setup_jax_step``), runs ``--warmup``
steps, then times ``--steps`` steps (``--colour_on_device``: with the colour augmentation
inside the step, as ``augment.colour_on_device``). Prints a table (images/s, TFLOP/s and MFU
from XLA's cost analysis and the device's peak) and writes JSON.
"""

import argparse
import json
import os
import platform
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    REPO,
    mfu,
    parse_sizes,
    peak_tflops,
    resolve_dtype,
    setup_jax_step,
    time_steps,
)

from cl_jax import parallel  # noqa: E402


def benchmark(method, model, size, batch, steps, warmup, mesh, dtype, peak, colour_on_device):
    step = setup_jax_step(method, model, size, batch, mesh, dtype=dtype,
                          colour_on_device=colour_on_device)
    time_steps(step, step.sync, warmup)
    step_s = float(np.median(time_steps(step, step.sync, steps)))
    return {"method": method, "model": model, "image_size": size, "batch": batch,
            "dtype": dtype, "colour_on_device": colour_on_device, "step_ms": 1000 * step_s,
            "images_per_s": batch / step_s,
            "compile_s": step.compile_s, "flops_per_step": step.flops_per_step,
            "compiler_options": step.compiler_options,
            "tflops_per_s": step.flops_per_step / step_s / 1e12,
            "mfu": mfu(step.flops_per_step, step_s, peak), "loss": float(step.metrics["loss"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="simclr,byol")
    parser.add_argument("--models", default="resnet18@32,resnet50@224",
                        help="comma-separated backbone@resolution[:batch]")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--dtype", default="auto",
                        help="float32, bfloat16, or auto (bfloat16 on accelerators)")
    parser.add_argument("--colour_on_device", action="store_true",
                        help="time the step with the colour augmentation inside it")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="the device's peak, if not in _common.PEAK_TFLOPS")
    parser.add_argument("--tiny", action="store_true",
                        help="convnet@8, batch 16, 2 steps: checks that it runs")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "train_step.json"))
    args = parser.parse_args(argv)
    if args.tiny:
        args.models, args.batch, args.steps, args.warmup = "convnet@8", 16, 2, 1
    dtype = resolve_dtype(args.dtype)
    device = jax.devices()[0]
    peak = peak_tflops(device.device_kind, args.peak_tflops)
    mesh = parallel.create_mesh()
    rows = []
    for method in args.methods.split(","):
        for model, size, batch in parse_sizes(args.models, args.batch):
            rows.append(benchmark(method, model, size, batch, args.steps, args.warmup, mesh,
                                  dtype, peak, args.colour_on_device))
            r = rows[-1]
            utilisation = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
            print(f"{r['method']:8s} {r['model']:9s} {r['image_size']:4d}px batch {r['batch']:5d}"
                  f" {dtype:8s} | {r['step_ms']:9.1f} ms/step | {r['images_per_s']:9.1f} "
                  f"images/s | {r['tflops_per_s']:7.2f} TFLOP/s | MFU {utilisation}"
                  f" | compile {r['compile_s']:.1f} s", flush=True)
    report = {"device": device.device_kind, "platform": device.platform,
              "device_count": jax.device_count(), "peak_tflops": peak,
              "host": platform.node(), "jax": jax.__version__,
              "date": time.strftime("%Y-%m-%d"), "results": rows}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
