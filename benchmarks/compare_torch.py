"""Images/s of the cl_jax train step against the same step in plain PyTorch, in one process.

    python benchmarks/compare_torch.py                      # SimCLR and BYOL, R18@32, R50@224
    python benchmarks/compare_torch.py --tiny               # R18@32, batch 32, a few steps (CPU)
    python benchmarks/compare_torch.py --sizes=resnet50@224:128 --compile --steps=20
    python benchmarks/compare_torch.py --json=-             # the JSON report on stdout

PyTorch is optional (``pip install -e '.[bench]'``). Without it the script measures cl_jax
alone, says so, and exits 0.

What is compared, for each method (SimCLR, BYOL) and ``model@resolution[:batch]``:

- cl_jax: the real jitted train step (``cl_jax.state.make_train_step``) of the method's config
  file (preset ``cifar10`` for ``resnet18`` — CIFAR stem —, ``imagenet`` for ``resnet50``,
  ``digits`` for ``convnet``), state donated, float32 parameters; the encoder computes in
  ``--dtype`` (auto: bfloat16 on accelerators, the fair partner of torch's bf16 autocast,
  and float32 on CPUs; in float32 XLA may use TF32 on GPUs, its default precision).
- PyTorch: the same step written here, mirroring cl_jax module for module: torchvision's
  ResNet (BasicBlock / Bottleneck with the stride on the 3x3 convolution, "v1.5"; CIFAR stem =
  3x3 stride-1 conv without max-pool), BatchNorm momentum 0.1 (= flax 0.9) and eps 1e-5, the
  config's projector / predictor MLPs (Linear without bias -> BatchNorm -> ReLU, then Linear
  with bias), the views grouped as each method's ``view_grouping`` (SimCLR: both views in
  one forward pass, BatchNorm statistics over both; BYOL: each view its own pass, in the
  online and the target network), the same loss (NT-Xent over the 2N views at the
  config's temperature; BYOL's symmetric ``2 - 2 cos`` with the target network in training
  mode and no gradient), the same LARS as ``cl_jax.optim.lars`` (decay and trust ratio on
  weights with ndim > 1, LARC clipping when the config has ``clip_lr``, momentum 0.9, the
  same warmup-cosine learning rate per step) and, for BYOL, the EMA target updated after the
  optimizer step with the same cosine tau schedule. Parameter counts of the two are printed
  and must be equal. ``channels_last`` memory format; ``--torch_precision`` ``fp32`` (TF32
  allowed on GPUs, like XLA), ``bf16`` / ``fp16`` (autocast; ``fp16`` with a GradScaler);
  ``--compile`` wraps the forward pass and loss in ``torch.compile``. Not mirrored: cl_jax's
  non-finite guard (it checks every gradient and selects the old state on a NaN) and its
  gradient-norm metric, extra work on the cl_jax side only.

Timing: ``--warmup`` steps of each (compilation, autotuning excluded), then ``--rounds``
alternating windows of ``--steps`` steps per framework, every step followed by
``jax.block_until_ready`` / ``torch.cuda.synchronize``; images/s = batch / median step time.
Alternating keeps the ratio fair on a machine shared with other work. One image = one
example (two views).

MFU of the cl_jax step: FLOPs that XLA counts for the compiled step (``cost_analysis()``; per
device with several devices) / step time / the device's dense bf16 peak (a table of known
GPUs and TPUs, or ``--peak_tflops``); n/a where the peak is unknown (CPUs). The PyTorch FLOPs
(``torch.utils.flop_counter``: matmuls and convolutions only) are reported as a cross-check.

On a CPU, PyTorch's OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless set):
spinning threads make PyTorch steps on a busy CPU many times slower than they are. On a
GPU, JAX is told not to preallocate and to stay below ``XLA_PYTHON_CLIENT_MEM_FRACTION``
(0.45 unless set) so that PyTorch has the rest of the memory in the same process.
"""

import argparse
import copy
import gc
import json
import os
import platform
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
# PyTorch's CPU threads (OpenMP) otherwise spin at every barrier: on a CPU shared with other
# work (JAX's own threads included) that makes small steps up to 10x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    REPO,
    TOTAL_STEPS,
    channels_of,
    mfu,
    parse_sizes,
    peak_tflops,
    resolve_dtype,
    setup_jax_step,
    synthetic_views,
    time_steps,
)

from cl_jax import parallel  # noqa: E402
from cl_jax.methods._target import momentum_schedule  # noqa: E402
from cl_jax.models.resnet import STAGE_SIZES  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
    from torch import nn

    Module, Optimizer = nn.Module, torch.optim.Optimizer
    TORCH_ERROR = None
except ImportError as err:  # the cl_jax half still runs
    torch = F = nn = None
    Module = Optimizer = object
    TORCH_ERROR = str(err)

NO_TORCH_MESSAGE = ("PyTorch is not installed ({}), so only cl_jax is measured. For the "
                    "comparison install it with: pip install -e '.[bench]'")
METHODS = ("simclr", "byol")
DEFAULT_SIZES = "resnet18@32:256,resnet50@224:128"
TINY_SIZES = "resnet18@32:32"

# --- PyTorch mirror of cl_jax's networks ----------------------------------------------------


def conv_bn(cin, cout, kernel, stride=1, zero_init=False):
    conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
    if zero_init:
        nn.init.zeros_(bn.weight)
    return nn.Sequential(conv, bn)


class BasicBlock(Module):
    """torchvision's BasicBlock: 3x3 (stride) -> 3x3, projection shortcut on a shape change."""

    expansion = 1

    def __init__(self, cin, width, stride, zero_init_residual):
        super().__init__()
        self.a = conv_bn(cin, width, 3, stride)
        self.b = conv_bn(width, width, 3, zero_init=zero_init_residual)
        self.shortcut = (conv_bn(cin, width, 1, stride) if stride != 1 or cin != width
                         else nn.Identity())

    def forward(self, x):
        return F.relu(self.shortcut(x) + self.b(F.relu(self.a(x))))


class Bottleneck(Module):
    """torchvision's Bottleneck (v1.5): 1x1 -> 3x3 (stride) -> 1x1 (4x width)."""

    expansion = 4

    def __init__(self, cin, width, stride, zero_init_residual):
        super().__init__()
        cout = 4 * width
        self.a = conv_bn(cin, width, 1)
        self.b = conv_bn(width, width, 3, stride)
        self.c = conv_bn(width, cout, 1, zero_init=zero_init_residual)
        self.shortcut = (conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout
                         else nn.Identity())

    def forward(self, x):
        y = self.c(F.relu(self.b(F.relu(self.a(x)))))
        return F.relu(self.shortcut(x) + y)


class ResNet(Module):
    """torchvision's ResNet-18/50 without the classifier; ``stem='cifar'``: 3x3 conv, no pool."""

    def __init__(self, depth, stem, zero_init_residual, channels=3):
        super().__init__()
        block = BasicBlock if depth < 50 else Bottleneck
        if stem == "imagenet":
            self.stem = nn.Sequential(conv_bn(channels, 64, 7, 2), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(conv_bn(channels, 64, 3, 1), nn.ReLU(inplace=True))
        blocks, cin = [], 64
        for stage, count in enumerate(STAGE_SIZES[depth]):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(block(cin, 64 * 2**stage, stride, zero_init_residual))
                cin = 64 * 2**stage * block.expansion
        self.blocks = nn.Sequential(*blocks)
        self.out_dim = cin

    def forward(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1)


class ConvNet(Module):
    """cl_jax.models.ConvNet: 3x3 conv -> BN -> ReLU stages (stride 2 after the first)."""

    def __init__(self, widths, channels):
        super().__init__()
        layers, cin = [], channels
        for stage, width in enumerate(widths):
            layers += [conv_bn(cin, width, 3, 1 if stage == 0 else 2), nn.ReLU(inplace=True)]
            cin = width
        self.layers = nn.Sequential(*layers)
        self.out_dim = cin

    def forward(self, x):
        return self.layers(x).mean(dim=(2, 3))


def mlp(cin, hidden_dims, output_dim):
    """cl_jax.models.MLP: [Linear (no bias) -> BatchNorm -> ReLU] x k -> Linear (bias)."""
    layers = []
    for width in hidden_dims:
        layers += [nn.Linear(cin, width, bias=False), nn.BatchNorm1d(width, momentum=0.1),
                   nn.ReLU(inplace=True)]
        cin = width
    return nn.Sequential(*layers, nn.Linear(cin, output_dim))


def encoder_of(model_config, channels):
    name = model_config.encoder
    if name == "convnet":
        return ConvNet(tuple(model_config.widths), channels)
    return ResNet(int(name[len("resnet"):]), model_config.stem, model_config.zero_init_residual,
                  channels)


class Network(Module):
    """Encoder -> projector [-> predictor]; returns (projection, prediction or None)."""

    def __init__(self, encoder, projector, predictor=None):
        super().__init__()
        self.encoder, self.projector, self.predictor = encoder, projector, predictor

    def forward(self, x):
        z = self.projector(self.encoder(x))
        return z, (self.predictor(z) if self.predictor is not None else None)


def nt_xent(z1, z2, temperature):
    """cl_jax.losses.nt_xent: mean over the 2N anchors of logsumexp(others) - positive."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = (z[:n] * z[n:]).sum(dim=1) / temperature
    return (torch.logsumexp(sim, dim=1) - positive.repeat(2)).mean()


def byol_loss(p, z):
    """cl_jax.losses.byol: mean(2 - 2 cos(p, z))."""
    return (2.0 - 2.0 * (F.normalize(p.float(), dim=1) * F.normalize(z.float(), dim=1))
            .sum(dim=1)).mean()


class LARS(Optimizer):
    """cl_jax.optim.lars: for weights with ndim > 1, ``u = g + wd * w`` scaled by the trust
    ratio ``eta * |w| / |u|`` (1 if a norm is 0; LARC: ``min(trust / lr, 1)``); other
    parameters ``u = g``; then ``m = momentum * m + u`` and ``w -= lr * m``."""

    def __init__(self, params, lr, weight_decay, momentum, trust_coefficient, clip_lr):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      eta=trust_coefficient, clip_lr=clip_lr))

    def step(self, closure=None):
        with torch.no_grad():
            for group in self.param_groups:
                self._update(group)

    def _update(self, group):
        lr = group["lr"]
        params = [p for p in group["params"] if p.grad is not None]
        weights = [p for p in params if p.ndim > 1]
        others = [p for p in params if p.ndim <= 1]
        u = torch._foreach_add([p.grad for p in weights], weights,
                               alpha=group["weight_decay"])
        w_norm = torch.stack(torch._foreach_norm(weights))
        u_norm = torch.stack(torch._foreach_norm(u))
        trust = torch.where((w_norm > 0) & (u_norm > 0),
                            group["eta"] * w_norm / u_norm.clamp_min(1e-30),
                            torch.ones_like(w_norm))
        if group["clip_lr"]:
            trust = torch.clamp(trust / max(lr, 1e-30), max=1.0)
        torch._foreach_mul_(u, list(trust.unbind(0)))
        buffers = [self.state[p].setdefault("momentum", torch.zeros_like(p))
                   for p in weights + others]
        torch._foreach_mul_(buffers, group["momentum"])
        torch._foreach_add_(buffers, list(u) + [p.grad for p in others])
        torch._foreach_add_(weights + others, buffers, alpha=-lr)


class TorchStep:
    """One PyTorch train step of ``method`` as the cl_jax config describes it; call to run."""

    def __init__(self, method, config, host_views, lrs, taus, device, precision, compile_):
        self.method, self.device, self.precision = method, device, precision
        self.lrs, self.taus, self.k = lrs, taus, 0
        m = config.method
        channels = host_views[0].shape[-1]
        encoder = encoder_of(config.model, channels)
        projector = mlp(encoder.out_dim, tuple(m.proj_hidden_dims), m.proj_dim)
        predictor = (mlp(m.proj_dim, tuple(m.pred_hidden_dims), m.proj_dim)
                     if method == "byol" else None)
        self.online = Network(encoder, projector, predictor)
        self.target = None
        if method == "byol":
            self.target = copy.deepcopy(Network(encoder, projector)).requires_grad_(False)
        self.temperature = m.get("temperature", 0.1)
        for net in (self.online, self.target):
            if net is not None:
                net.to(device, memory_format=torch.channels_last).train()
        self.num_params = sum(p.numel() for p in self.online.parameters())
        self.ema_online = (list(self.online.encoder.parameters())
                           + list(self.online.projector.parameters()))
        self.ema_target = list(self.target.parameters()) if self.target is not None else []
        self.views = tuple(torch.from_numpy(v).permute(0, 3, 1, 2).contiguous(
            memory_format=torch.channels_last).to(device) for v in host_views)
        o = config.optim
        if o.name != "lars":
            raise SystemExit(f"compare_torch mirrors LARS only; the config has {o.name!r}")
        self.optimizer = LARS(self.online.parameters(), lr=0.0, weight_decay=o.weight_decay,
                              momentum=o.momentum, trust_coefficient=o.trust_coefficient,
                              clip_lr=o.clip_lr)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.loss_fn = torch.compile(self.loss) if compile_ else self.loss
        self.last_loss = None

    def loss(self, x1, x2):
        n = x1.shape[0]
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            if self.method == "simclr":
                z, _ = self.online(torch.cat([x1, x2]))
                return nt_xent(z[:n], z[n:], self.temperature)
            (_, p1), (_, p2) = self.online(x1), self.online(x2)
            with torch.no_grad():
                (t1, _), (t2, _) = self.target(x1), self.target(x2)
            return byol_loss(p1, t2) + byol_loss(p2, t1)

    def __call__(self, loss_fn=None):
        k = min(self.k, len(self.lrs) - 1)
        loss = (loss_fn or self.loss_fn)(*self.views)
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer.param_groups[0]["lr"] = float(self.lrs[k])
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.target is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.ema_target, self.ema_online, 1.0 - float(self.taus[k]))
        self.last_loss = loss.detach()
        self.k += 1

    def count_flops(self):
        """Matmul and convolution FLOPs of one eager step (forward and backward)."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            self(loss_fn=self.loss)
        return float(counter.get_total_flops())

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# --- the benchmark ----------------------------------------------------------------------------


def summary(times, batch):
    step_s = float(np.median(times))
    return {"step_ms": 1000 * step_s, "images_per_s": batch / step_s, "timed_steps": len(times)}


def compare(method, model, size, batch, args, mesh, torch_device, precisions, peak):
    views = synthetic_views(batch, size, channels_of(model))
    jax_step = setup_jax_step(method, model, size, batch, mesh, views,
                              dtype=resolve_dtype(args.dtype))
    lrs = np.asarray(jax_step.schedule(np.arange(TOTAL_STEPS)))
    taus = (np.asarray(momentum_schedule(np.arange(TOTAL_STEPS), TOTAL_STEPS,
                                         jax_step.config.method.tau_base))
            if method == "byol" else None)
    time_steps(jax_step, jax_step.sync, args.warmup)
    runs = []
    for precision in precisions:
        run = TorchStep(method, jax_step.config, views, lrs, taus, torch_device, precision,
                        args.compile)
        flops = run.count_flops()
        start = time.perf_counter()
        time_steps(run, run.sync, args.warmup)
        runs.append((run, flops, time.perf_counter() - start))
    jax_times, torch_times = [], [[] for _ in runs]
    for _ in range(args.rounds):
        jax_times += time_steps(jax_step, jax_step.sync, args.steps)
        for (run, _, _), times in zip(runs, torch_times, strict=True):
            times += time_steps(run, run.sync, args.steps)
    jax_row = summary(jax_times, batch)
    step_s = jax_row["step_ms"] / 1000
    jax_row.update(dtype=jax_step.config.model.dtype, compile_s=jax_step.compile_s,
                   flops_per_step=jax_step.flops_per_step,
                   tflops_per_s=jax_step.flops_per_step / step_s / 1e12,
                   mfu=mfu(jax_step.flops_per_step, step_s, peak), params=jax_step.num_params,
                   loss=float(jax_step.metrics["loss"]),
                   compiler_options=jax_step.compiler_options)
    row = {"method": method, "model": model, "image_size": size, "batch": batch,
           "images_per_s": jax_row["images_per_s"], "jax": jax_row, "torch": None}
    if runs:
        row["torch"] = []
        for (run, flops, warmup_s), times in zip(runs, torch_times, strict=True):
            t = summary(times, batch)
            t.update(precision=run.precision, compile=bool(args.compile), params=run.num_params,
                     flops_per_step=flops, warmup_s=warmup_s, loss=float(run.last_loss),
                     ratio=jax_row["images_per_s"] / t["images_per_s"])
            row["torch"].append(t)
    del jax_step, runs
    gc.collect()
    if torch is not None and torch_device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def write_json(report, path):
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(path + ".tmp", path)


def fmt(value, spec, missing="n/a"):
    return missing if value is None else format(value, spec)


def print_row(r):
    j = r["jax"]
    name = f"{r['method']:6s} {r['model']}@{r['image_size']} b{r['batch']}"
    label = "cl_jax " + j["dtype"]
    print(f"{name:24s} {label:16s} {j['images_per_s']:9.1f} img/s  {j['step_ms']:9.1f} ms"
          f"  {j['tflops_per_s']:7.3f} TFLOP/s  MFU {fmt(j['mfu'], '.1%')}"
          f"  params {j['params']:,}  loss {j['loss']:.3f}", flush=True)
    for t in r["torch"] or []:
        label = "torch " + t["precision"] + ("+compile" if t["compile"] else "")
        print(f"{'':24s} {label:16s} {t['images_per_s']:9.1f} img/s  {t['step_ms']:9.1f} ms"
              f"  cl_jax/torch {t['ratio']:5.2f}x  params {t['params']:,}"
              f"  loss {t['loss']:.3f}", flush=True)


def print_table(report):
    precisions = sorted({t["precision"] + ("+compile" if t["compile"] else "")
                         for r in report["results"] for t in r["torch"] or []})
    head = "| method | model@res | batch | cl_jax dtype | cl_jax img/s | cl_jax MFU |"
    rule = "|---|---|---:|---|---:|---:|"
    for p in precisions:
        head += f" torch {p} img/s | cl_jax / torch {p} |"
        rule += "---:|---:|"
    print(head)
    print(rule)
    for r in report["results"]:
        line = (f"| {r['method']} | {r['model']}@{r['image_size']} | {r['batch']} | "
                f"{r['jax']['dtype']} | {r['jax']['images_per_s']:.1f} | "
                f"{fmt(r['jax']['mfu'], '.1%')} |")
        by_precision = {t["precision"] + ("+compile" if t["compile"] else ""): t
                        for t in r["torch"] or []}
        for p in precisions:
            t = by_precision.get(p)
            line += (f" {t['images_per_s']:.1f} | {t['ratio']:.2f}x |" if t else " - | - |")
        print(line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--sizes", default=DEFAULT_SIZES,
                        help="comma-separated model@resolution[:batch] (models: resnet18, "
                        "resnet50, convnet)")
    parser.add_argument("--batch", type=int, default=None,
                        help="global batch for every size (overrides the :batch of --sizes)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per window")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating timing windows per framework")
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward+loss")
    parser.add_argument("--torch_precision", default="auto",
                        help="comma-separated fp32, bf16, fp16; auto: fp32,bf16 on a GPU, "
                        "fp32 on a CPU")
    parser.add_argument("--torch_device", default="auto", help="auto: cuda if available")
    parser.add_argument("--dtype", default="auto",
                        help="cl_jax's encoder compute dtype: float32, bfloat16, or auto "
                        "(bfloat16 on accelerators, float32 on CPUs)")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="peak TFLOP/s of one device for the MFU (default: the table)")
    parser.add_argument("--tiny", action="store_true",
                        help=f"{TINY_SIZES} (batch 32), 3 steps x 2 rounds, 2 warmup: for CPUs")
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "compare_torch.json"),
                        help="where to write the JSON report ('-': stdout)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.sizes, args.steps, args.rounds, args.warmup = TINY_SIZES, 3, 2, 2
    sizes = parse_sizes(args.sizes, default_batch=256)
    if args.batch:
        sizes = [(model, size, args.batch) for model, size, _ in sizes]
    device = jax.devices()[0]
    peak = peak_tflops(device.device_kind, args.peak_tflops)
    torch_device, precisions = None, []
    if torch is None:
        print(NO_TORCH_MESSAGE.format(TORCH_ERROR), flush=True)
    else:
        name = args.torch_device
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        torch_device = torch.device(name)
        if args.torch_precision == "auto":
            precisions = ["fp32", "bf16"] if torch_device.type == "cuda" else ["fp32"]
        else:
            precisions = args.torch_precision.split(",")
        if torch_device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # XLA's default for float32
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        if (torch_device.type == "cpu") != (device.platform == "cpu"):
            print(f"WARNING: cl_jax runs on {device.platform}, PyTorch on {torch_device}: the "
                  "ratio compares different hardware.", flush=True)
    mesh = parallel.create_mesh()
    rows = []
    report = {
        "date": time.strftime("%Y-%m-%d"), "host": platform.node(),
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "device": device.device_kind, "platform": device.platform,
        "device_count": jax.device_count(), "peak_tflops": peak, "jax": jax.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "torch_device": str(torch_device) if torch_device is not None else None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "torch_missing": None if torch is not None else NO_TORCH_MESSAGE.format(TORCH_ERROR),
        "settings": {"steps": args.steps, "rounds": args.rounds, "warmup": args.warmup,
                     "compile": bool(args.compile), "precisions": precisions},
        "results": rows,
    }
    for method in args.methods.split(","):
        for model, size, batch in sizes:
            rows.append(compare(method, model, size, batch, args, mesh, torch_device,
                                precisions, peak))
            print_row(rows[-1])
            if args.json != "-":  # after every row, so a long run that dies keeps its rows
                write_json(report, args.json)
    print()
    print_table(report)
    if torch is None:
        print(NO_TORCH_MESSAGE.format(TORCH_ERROR), flush=True)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print(f"wrote {args.json}")
    return report

if __name__ == "__main__":
    main()
