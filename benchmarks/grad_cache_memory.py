"""Memory of a SimCSE step with and without GradCache against the batch size (no TensorFlow).

    python benchmarks/grad_cache_memory.py                       # N = 64 ... 2048, chunk 64
    python benchmarks/grad_cache_memory.py --chunk=32 --budget_mb=512
    python benchmarks/grad_cache_memory.py --tiny                # a tiny model: checks that it runs

The step is the loss and its gradient (no optimiser) of unsupervised SimCSE (Gao, Yao & Chen
2021, arXiv:2104.08821): a ``cl_jax.models.TextTransformer`` of the CLIP glyphs config's text
tower size (width 128, depth 2, 4 heads, 24 tokens, vocabulary 1024), bidirectional, with mean
pooling and dropout 0.1, run twice on N random token sequences with two dropout keys, and InfoNCE
(``cl_jax.losses.info_nce``) between the two passes, T = 0.05. Three programs per N:

* ``plain``: ``jax.value_and_grad`` of the loss on the whole batch, one forward pass per
  dropout key: the ordinary step, every activation kept;
* ``cached``: ``cl_jax.grad_cache.grad_cache_value_and_grad`` with chunks of ``--chunk`` rows;
* ``cached_blockwise``: the same with the loss streamed over blocks of ``--block`` keys
  (``info_nce(block_size=...)``), so the N x N logits are not held either.

For each it reads the compiled program's memory analysis (argument, output, temporary and
aliased bytes; on a CPU, where nothing is allocated, compiling is enough) and reports the peak
``argument + output + temp - alias``: parameters, tokens, gradients and every buffer XLA
needs at once. It then searches, compiling only, for the largest N (a multiple of the chunk)
whose peak fits ``--budget_mb``: doubling, then bisection to within ``max(chunk, N / 32)``.
Sizes up to ``--time_up_to`` (default 256 on CPU, all on accelerators) are also run: median
milliseconds over ``--repeats`` runs after one warm-up, and the largest relative difference
of the cached gradients from ``full``'s, ``grad_cache.full_batch_value_and_grad``: the exact
reference, with the cached programs' per-chunk dropout keys (``plain`` draws other masks);
its memory is recorded too. Prints a table and writes JSON.
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

from cl_jax import grad_cache, losses  # noqa: E402
from cl_jax.models.text import TextTransformer  # noqa: E402

MIB = 2**20
VARIANTS = ("plain", "cached", "cached_blockwise")
TEMPERATURE = 0.05  # SimCSE's
VOCAB = 1024


def simcse(model, block_size):
    """``(embed_fn, loss_fn)`` of unsupervised SimCSE on ``model``."""

    def embed_fn(params, tokens, rng):
        first, second = jax.random.split(rng)
        encode = lambda key: model.apply({"params": params}, tokens, train=True,
                                         rngs={"dropout": key})
        return encode(first), encode(second)

    def loss_fn(params, embeddings):
        z1, z2 = embeddings
        return losses.info_nce(z1, z2, temperature=TEMPERATURE, block_size=block_size), None

    return embed_fn, loss_fn


def plain_value_and_grad(embed_fn, loss_fn):
    """The ordinary step: the whole batch in one forward pass."""
    objective = lambda params, tokens, rng: loss_fn(params, embed_fn(params, tokens, rng))
    return jax.value_and_grad(objective, has_aux=True)


def build_steps(model, chunk, block):
    """The jitted ``(params, tokens, rng) -> ((loss, aux), grads)`` of each variant, and of
    the reference ``full``."""
    dense, blockwise = simcse(model, None), simcse(model, block)
    return {
        "plain": jax.jit(plain_value_and_grad(*dense)),
        "cached": jax.jit(grad_cache.grad_cache_value_and_grad(*dense, chunk)),
        "cached_blockwise": jax.jit(grad_cache.grad_cache_value_and_grad(*blockwise, chunk)),
    }, jax.jit(grad_cache.full_batch_value_and_grad(*dense, chunk))


def memory_of(step, params, n, length):
    """The compiled program's memory at batch ``n``, in bytes, and its compile seconds."""
    tokens = jax.ShapeDtypeStruct((n, length), jnp.int32)
    start = time.perf_counter()
    compiled = step.lower(params, tokens, jax.random.key(0)).compile()
    seconds = time.perf_counter() - start
    m = compiled.memory_analysis()
    row = {"argument_bytes": m.argument_size_in_bytes, "output_bytes": m.output_size_in_bytes,
           "temp_bytes": m.temp_size_in_bytes, "alias_bytes": m.alias_size_in_bytes,
           "compile_s": seconds}
    row["peak_bytes"] = (row["argument_bytes"] + row["output_bytes"] + row["temp_bytes"]
                         - row["alias_bytes"])
    return compiled, row


def run_and_time(compiled, args, repeats):
    """Median milliseconds of ``repeats`` runs after one warm-up, and the last result."""
    out = jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)), out


def max_rel_diff(grads, reference):
    """Largest |g - g_ref| over the largest |g_ref|, leaf by leaf."""
    diffs = [float(jnp.max(jnp.abs(g - r)) / jnp.max(jnp.abs(r)))
             for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True)]
    return max(diffs)


def measure(steps, full, params, n, length, vocab, timed, repeats):
    """One batch size: each variant's memory (and, if ``timed``, time, loss and the cached
    gradients' difference from ``full``'s). A JSON row."""
    row = {"n": n}
    outputs = {}
    tokens = jnp.asarray(np.random.RandomState(n).randint(1, vocab, (n, length)), jnp.int32)
    for name, step in {**steps, **({"full": full} if timed else {})}.items():
        compiled, row[name] = memory_of(step, params, n, length)
        if timed:
            row[name]["ms"], outputs[name] = run_and_time(compiled, (params, tokens,
                                                                     jax.random.key(1)), repeats)
            row[name]["loss"] = float(outputs[name][0][0])
    if timed:
        ref = outputs["full"][1]
        for name in VARIANTS[1:]:
            row[name]["grad_rel_diff"] = max_rel_diff(outputs[name][1], ref)
    return row


def largest_fitting(step, params, length, chunk, budget, known, limit):
    """The largest N (a multiple of ``chunk``, at most ``limit``) whose peak fits ``budget``
    bytes, to within ``max(chunk, N / 32)``: doubling from the largest known fit, then
    bisection. ``known``: {N: peak bytes}, extended with every N compiled here. Returns
    (N, the smallest N found over the budget or None)."""

    def fits(n):
        if n not in known:
            known[n] = memory_of(step, params, n, length)[1]["peak_bytes"]
        return known[n] <= budget

    good = max([n for n, peak in known.items() if peak <= budget], default=0)
    if not good:
        if not fits(chunk):
            return 0, chunk
        good = chunk
    bad = min([n for n, peak in known.items() if peak > budget and n > good], default=None)
    while bad is None:
        if 2 * good > limit:
            return good, None
        if fits(2 * good):
            good *= 2
        else:
            bad = 2 * good
    while bad - good > max(chunk, good // 32):
        middle = (good + bad) // 2 // chunk * chunk
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good, bad


def fmt_mib(nbytes):
    return f"{nbytes / MIB:,.1f}"


def print_header(args, device, num_params):
    print(f"SimCSE loss + gradient, text tower width {args.width}, depth {args.depth}, "
          f"{args.length} tokens ({num_params:,d} parameters), chunk {args.chunk}, loss block "
          f"{args.block}; {device.platform} ({device.device_kind}); peak = argument + output "
          "+ temp - alias, MiB; time ms")
    print(f"{'N':>6} | {'plain peak':>10} {'cached':>10} {'+blockwise':>10} | {'plain temp':>10} "
          f"{'cached':>10} {'+blockwise':>10} | {'plain ms':>9} {'cached':>9} {'+block':>9} |"
          " grad rel. diff from full")


def print_row(r):
    peaks = " ".join(f"{fmt_mib(r[v]['peak_bytes']):>10}" for v in VARIANTS)
    temps = " ".join(f"{fmt_mib(r[v]['temp_bytes']):>10}" for v in VARIANTS)
    times = " ".join(f"{r[v]['ms']:>9,.1f}" if "ms" in r[v] else f"{'-':>9}" for v in VARIANTS)
    diff = r["cached"].get("grad_rel_diff")
    note = "" if diff is None else (f"{diff:.1e} / {r['cached_blockwise']['grad_rel_diff']:.1e}")
    print(f"{r['n']:>6,d} | {peaks} | {temps} | {times} | {note}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,256,512,1024,2048",
                        help="comma-separated batch sizes N, multiples of --chunk")
    parser.add_argument("--chunk", type=int, default=64, help="GradCache chunk rows")
    parser.add_argument("--block", type=int, default=256, help="blockwise loss: keys per block")
    parser.add_argument("--budget_mb", type=float, default=1024.0,
                        help="largest batch whose peak fits this many MiB (0: skip)")
    parser.add_argument("--max_batch", type=int, default=1 << 20,
                        help="the budget search stops here")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--length", type=int, default=24, help="tokens per sequence")
    parser.add_argument("--time_up_to", type=int, default=None,
                        help="run and time sizes up to this N; default 256 on CPU, else all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true",
                        help="width 16, 1 layer, N = 16, chunk 8: checks that it runs")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks",
                                                      "grad_cache_memory.json"))
    args = parser.parse_args(argv)
    if args.tiny:
        args.sizes, args.chunk, args.block, args.width, args.depth = "16", 8, 8, 16, 1
        args.length, args.budget_mb, args.max_batch, args.repeats = 8, 0.75, 64, 1
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(n % args.chunk for n in sizes):
        raise SystemExit(f"--sizes: every N must be a multiple of --chunk={args.chunk}")
    device = jax.devices()[0]
    limit = args.time_up_to
    if limit is None:
        limit = 256 if device.platform == "cpu" else sys.maxsize
    fields = dict(vocab_size=VOCAB, width=args.width, depth=args.depth,
                  num_heads=4 if args.width >= 64 else 2, max_len=args.length, causal=False,
                  pooling="mean", dropout_rate=0.1, pad_id=0)
    model = TextTransformer(**fields)
    params = jax.jit(lambda: model.init(jax.random.key(0),
                                        jnp.ones((2, args.length), jnp.int32))["params"])()
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    steps, full = build_steps(model, args.chunk, args.block)
    print_header(args, device, num_params)
    rows = []
    for n in sizes:
        rows.append(measure(steps, full, params, n, args.length, fields["vocab_size"], n <= limit,
                            args.repeats))
        print_row(rows[-1])
    budget = {}
    if args.budget_mb > 0:
        for name, step in steps.items():
            known = {r["n"]: r[name]["peak_bytes"] for r in rows}
            fits, exceeds = largest_fitting(step, params, args.length, args.chunk,
                                            args.budget_mb * MIB, known, args.max_batch)
            budget[name] = {"fits": fits, "exceeds": exceeds,
                            "peak_mib": {n: known[n] / MIB for n in sorted(known)}}
        print(f"largest N whose peak fits {args.budget_mb:,g} MiB (multiples of {args.chunk}, "
              f"at most {args.max_batch:,d}; the smallest N found over it): "
              + ", ".join(f"{name} {b['fits']:,d} ({b['exceeds'] or '-'})"
                          for name, b in budget.items()))
    report = {"device": device.device_kind, "platform": device.platform,
              "host": platform.node(), "jax": jax.__version__,
              "date": time.strftime("%Y-%m-%d"), "model": dict(fields), "params": num_params,
              "chunk": args.chunk, "block": args.block, "temperature": TEMPERATURE,
              "time_up_to": limit, "budget_mb": args.budget_mb, "max_batch": args.max_batch,
              "largest_batch_in_budget": budget, "results": rows}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
