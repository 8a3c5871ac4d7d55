"""Helpers shared by the benchmarks: the jitted cl_jax train step on synthetic data, timing,
peak FLOP/s of known accelerators and MFU. No TensorFlow needed.

``setup_jax_step`` builds exactly what ``benchmarks/train_step.py`` times: the method and
optimiser of the method's config file (preset ``cifar10`` for ResNet-18, ``imagenet`` for
ResNet-50, ``digits`` for the small ConvNet), the real ``make_train_step`` jitted with the
state donated, and a synthetic batch of two float32 views.
"""

import dataclasses
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from cl_jax import compile_options, config_lib, device_augment, parallel  # noqa: E402
from cl_jax.state import create_method_and_optimizer, init_train_state, make_train_step  # noqa: E402

PRESET_OF = {"resnet18": "cifar10", "resnet50": "imagenet", "convnet": "digits"}
# The schedule the benchmarks build: only its shape matters for speed (warmup, so a small lr).
TOTAL_STEPS, STEPS_PER_EPOCH = 1000, 100

# Dense bf16 peak TFLOP/s per device (vendor data sheets), matched against
# ``jax.Device.device_kind`` in this order (first substring that matches wins).
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM; "NVIDIA H100 80GB HBM3"
    ("H200", 989.0),
    ("A100", 312.0),
    ("TPU v4", 275.0),
    ("TPU v5 lite", 197.0),  # v5e
    ("TPU v5e", 197.0),
    ("TPU v5p", 459.0),
    ("TPU v5", 459.0),  # v5p reports "TPU v5"
    ("TPU v6 lite", 918.0),  # v6e (Trillium)
)


def parse_sizes(spec, default_batch=None):
    """``"resnet18@32:256,resnet50@224"`` -> [(model, image size, batch or default_batch)]."""
    sizes = []
    for item in spec.split(","):
        model_res, _, batch = item.strip().partition(":")
        model, _, res = model_res.partition("@")
        if model not in PRESET_OF or not res.isdigit():
            raise SystemExit(f"--sizes: {item!r} is not <model>@<resolution>[:<batch>] with "
                             f"model one of {', '.join(PRESET_OF)}")
        sizes.append((model, int(res), int(batch) if batch else default_batch))
    return sizes


def load_config(method, model, batch, dtype="float32"):
    """The method's config file at the preset for ``model``, with ``batch``, ``model`` and
    the encoder's compute ``dtype``."""
    config = config_lib.load_config_file(
        os.path.join(REPO, "configs", f"{method}.py:{PRESET_OF[model]}"))
    config.batch_size = batch
    config.model.encoder = model
    config.model.dtype = dtype
    return config


def resolve_dtype(name):
    """``auto``: bfloat16 on accelerators (mixed precision), float32 on CPUs."""
    if name == "auto":
        return "float32" if jax.devices()[0].platform == "cpu" else "bfloat16"
    return name


def channels_of(model):
    return 1 if model == "convnet" else 3


def synthetic_views(batch, size, channels, seed=0):
    """Two host views (batch, size, size, channels) float32 N(0, 1), as normalised images."""
    rng = np.random.RandomState(seed)
    return tuple(rng.randn(batch, size, size, channels).astype(np.float32) for _ in range(2))


def flops_of(compiled):
    """FLOPs XLA counts for one run of a compiled program (per device), or 0 if unknown."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return 0.0
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


@dataclasses.dataclass
class JaxStep:
    """A compiled cl_jax train step and its (donated) state, ready to time."""

    config: Any
    method: Any
    schedule: Any
    compiled: Any
    state: Any
    batch: Any
    compile_s: float
    flops_per_step: float
    num_params: int
    compiler_options: dict
    metrics: Any = None

    def __call__(self):
        self.state, self.metrics = self.compiled(self.state, self.batch)

    def sync(self):
        jax.block_until_ready(self.metrics)


def setup_jax_step(method, model, size, batch, mesh, views=None, dtype="float32",
                   colour_on_device=False):
    """Builds, initialises and compiles the cl_jax train step of ``method`` on ``model@size``
    (with the colour augmentation inside the step if ``colour_on_device``)."""
    config = load_config(method, model, batch, dtype)
    config.augment.colour_on_device = colour_on_device
    method_obj, schedule, tx = create_method_and_optimizer(
        config, 0, total_steps=TOTAL_STEPS, steps_per_epoch=STEPS_PER_EPOCH)
    replicated = parallel.replicated(mesh)
    sample = {"views": (jnp.zeros((2, size, size, channels_of(model))),)}
    state = jax.jit(lambda rng: init_train_state(method_obj, tx, rng, sample),
                    out_shardings=replicated)(jax.random.key(0))
    views = synthetic_views(batch, size, channels_of(model)) if views is None else views
    host = {"views": views, "label": np.zeros((batch,), np.int32)}
    batch_arrays = parallel.to_global(host, mesh)
    options = compile_options.for_run(config)
    step = jax.jit(make_train_step(method_obj, tx, schedule, 0,
                                   augment=device_augment.from_config(config)),
                   in_shardings=(replicated, parallel.batch_sharding(mesh)),
                   out_shardings=(replicated, replicated), donate_argnums=0,
                   compiler_options=options)
    start = time.perf_counter()
    compiled = step.lower(state, batch_arrays).compile()
    compile_s = time.perf_counter() - start
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    return JaxStep(config, method_obj, schedule, compiled, state, batch_arrays, compile_s,
                   flops_of(compiled), num_params, options)


def time_steps(step, sync, count):
    """Seconds of each of ``count`` calls of ``step()``, each followed by ``sync()``."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times


def peak_tflops(device_kind, override=None):
    """Dense bf16 peak TFLOP/s of one device: ``override`` if given, else the table, else None."""
    if override:
        return float(override)
    for name, tflops in PEAK_TFLOPS:
        if name.lower() in device_kind.lower():
            return tflops
    return None


def mfu(flops_per_step, step_s, peak):
    """Model FLOPs utilisation: achieved FLOP/s over the peak (None if either is unknown)."""
    if not peak or not flops_per_step or not step_s:
        return None
    return flops_per_step / step_s / (peak * 1e12)
