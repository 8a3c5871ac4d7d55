"""Tokens/s of the text tower's train step on synthetic tokens (no TensorFlow needed).

    python benchmarks/text_tower.py                        # glyphs:256 and clip-base:32
    python benchmarks/text_tower.py --sizes=clip-base:128 --steps=20 --dtype=bfloat16
    python benchmarks/text_tower.py --tiny                 # seconds, on any CPU

For each size it builds ``cl_jax.models.TextTransformer`` (``glyphs``: the CLIP config's
default text tower, width 128, depth 2, 4 heads, 24 tokens, vocabulary 1024, projection to the
embedding size 128; ``clip-base``: CLIP's text encoder, width 512, depth 12, 8 heads, 77 tokens,
vocabulary 49,408, projection 512; Radford et al. 2021, Sec. 2.4) and jits one train step on one
device, the state donated: the forward pass on a (batch, max_len) batch of random token ids
(no padding), CLIP's loss (``cl_jax.losses.clip``, scale 1/0.07) of the text features against
fixed random image embeddings standing in for the image tower, the backward pass and an AdamW
update (lr 1e-3, b2 0.98, weight decay 0.1, as ``configs/clip.py``). After ``--warmup`` steps
it times ``--steps`` steps and prints the median: tokens/s (batch x max_len), TFLOP/s and MFU
from XLA's cost analysis and the device's peak (``_common``). Writes JSON.
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
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import REPO, flops_of, mfu, peak_tflops, resolve_dtype, time_steps  # noqa: E402

from cl_jax import losses  # noqa: E402
from cl_jax.configs.clip import text_tower  # noqa: E402
from cl_jax.models import TEXT_FIELDS  # noqa: E402
from cl_jax.models.text import TextTransformer  # noqa: E402

# name: (TextTransformer fields, output_dim, default batch)
SIZES = {
    "glyphs": (text_tower(), 128, 256),
    "clip-base": (text_tower(vocab_size=49408, width=512, depth=12, num_heads=8, max_len=77),
                  512, 32),
    "tiny": (text_tower(vocab_size=64, width=32, depth=1, num_heads=2, max_len=8), 16, 8),
}
CLIP_SCALE = 1 / 0.07


def parse_sizes(spec, default_batch=None):
    """``"glyphs:256,clip-base"`` -> [(name, batch)], the size's own batch if none is given."""
    sizes = []
    for item in spec.split(","):
        name, _, batch = item.strip().partition(":")
        if name not in SIZES or not (batch.isdigit() or not batch):
            raise SystemExit(f"--sizes: {item!r} is not <size>[:<batch>] with size one of "
                             f"{', '.join(SIZES)}")
        sizes.append((name, int(batch) if batch else default_batch or SIZES[name][2]))
    return sizes


def make_step(model, tx):
    """The jitted train step ``(params, opt_state), tokens, images -> state, loss``."""

    def loss_fn(params, tokens, images):
        return losses.clip(images, model.apply(params, tokens, train=True), CLIP_SCALE)

    def step(state, tokens, images):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens, images)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return jax.jit(step, donate_argnums=0)


def benchmark(name, batch, steps, warmup, dtype, peak):
    fields, output_dim, _ = SIZES[name]
    model = TextTransformer(**{k: fields[k] for k in TEXT_FIELDS if k != "output_dim"},
                            output_dim=output_dim, dtype=jnp.dtype(dtype))
    rng = np.random.RandomState(0)
    length = fields["max_len"]
    tokens = jnp.asarray(rng.randint(1, fields["vocab_size"], (batch, length)), jnp.int32)
    images = jnp.asarray(rng.normal(size=(batch, output_dim)), jnp.float32)
    params = model.init(jax.random.key(0), tokens[:2])
    tx = optax.adamw(1e-3, b2=0.98, weight_decay=0.1)
    state = (params, tx.init(params))
    start = time.perf_counter()
    compiled = make_step(model, tx).lower(state, tokens, images).compile()
    compile_s = time.perf_counter() - start
    flops = flops_of(compiled)
    holder = {"state": state}

    def run():
        holder["state"], holder["loss"] = compiled(holder["state"], tokens, images)

    def sync():
        jax.block_until_ready(holder["loss"])

    time_steps(run, sync, warmup)
    step_s = float(np.median(time_steps(run, sync, steps)))
    return {"size": name, **{k: fields[k] for k in ("width", "depth", "num_heads", "max_len",
                                                     "vocab_size")},
            "output_dim": output_dim, "batch": batch, "dtype": dtype,
            "params": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params)),
            "step_ms": 1000 * step_s, "tokens_per_s": batch * length / step_s,
            "texts_per_s": batch / step_s, "compile_s": compile_s, "flops_per_step": flops,
            "tflops_per_s": flops / step_s / 1e12, "mfu": mfu(flops, step_s, peak),
            "loss": float(holder["loss"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="glyphs,clip-base",
                        help=f"comma-separated <size>[:<batch>], size of {', '.join(SIZES)}")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch of the sizes without one (default: the size's own)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--dtype", default="auto",
                        help="float32, bfloat16, or auto (bfloat16 on accelerators)")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="the device's peak, if not in _common.PEAK_TFLOPS")
    parser.add_argument("--tiny", action="store_true",
                        help="width 32, depth 1, 8 tokens, batch 8, 2 steps: checks that it runs")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "text_tower.json"))
    args = parser.parse_args(argv)
    if args.tiny:
        args.sizes, args.steps, args.warmup = "tiny", 2, 1
    dtype = resolve_dtype(args.dtype)
    device = jax.devices()[0]
    peak = peak_tflops(device.device_kind, args.peak_tflops)
    rows = []
    for name, batch in parse_sizes(args.sizes, args.batch):
        rows.append(benchmark(name, batch, args.steps, args.warmup, dtype, peak))
        r = rows[-1]
        utilisation = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"{name:9s} {r['width']:4d}w x {r['depth']:2d} {r['max_len']:3d} tokens batch "
              f"{batch:5d} {dtype:8s} | {r['step_ms']:9.1f} ms/step | {r['tokens_per_s']:10.0f} "
              f"tokens/s | {r['tflops_per_s']:7.3f} TFLOP/s | MFU {utilisation}"
              f" | compile {r['compile_s']:.1f} s", flush=True)
    report = {"device": device.device_kind, "platform": device.platform, "peak_tflops": peak,
              "host": platform.node(), "jax": jax.__version__,
              "date": time.strftime("%Y-%m-%d"), "results": rows}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
