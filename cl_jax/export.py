"""A trained ResNet for PyTorch: ``python -m cl_jax.export --workdir=runs/simclr_c10
--format=torchvision --out=resnet18.pth``.

Writes the run's backbone (the network whose output its evaluators score) as a torchvision
``ResNet`` ``state_dict`` without the classifier: load it with

    model = torchvision.models.resnet18()
    model.fc = torch.nn.Identity()
    model.load_state_dict(torch.load("resnet18.pth"))

and ``model.eval()(x)`` gives the run's features of NCHW images normalised as the run's
(``config.data.mean`` / ``std``). A run with the CIFAR stem (3x3 stride-1 convolution, no
max-pool) needs the same change on the torchvision side, as solo-learn makes it:
``model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False); model.maxpool = torch.nn.Identity()``
(and a greyscale run, ``in_channels=1``).
``.pth`` is written with ``torch.save`` (torch must be installed); ``--out=*.safetensors``
needs only the ``safetensors`` package. ResNet-18/34/50/101 with BatchNorm and width
multiplier 1 have a torchvision counterpart; other encoders (ConvNet, ViT, LayerNorm, wider
ResNets) get one clear error.
"""

import sys

import jax
import numpy as np
from absl import app, flags, logging

from cl_jax.errors import UserError
from cl_jax.models.resnet import STAGE_SIZES

FORMATS = ("torchvision",)


def conv(kernel):
    """A Flax kernel (kh, kw, in, out) as a torch weight (out, in, kh, kw)."""
    return np.ascontiguousarray(np.transpose(np.asarray(kernel, np.float32), (3, 2, 0, 1)))


def batch_norm(params, stats, prefix):
    return {f"{prefix}.weight": np.asarray(params["scale"], np.float32),
            f"{prefix}.bias": np.asarray(params["bias"], np.float32),
            f"{prefix}.running_mean": np.asarray(stats["mean"], np.float32),
            f"{prefix}.running_var": np.asarray(stats["var"], np.float32),
            f"{prefix}.num_batches_tracked": np.zeros((), np.int64)}


def torchvision_resnet(params, batch_stats, depth):
    """A ``cl_jax.models.ResNet``'s variables as torchvision's ``resnet{depth}`` state_dict
    (NumPy arrays; no ``fc``)."""
    out = {"conv1.weight": conv(params["Conv_0"]["kernel"]),
           **batch_norm(params["BatchNorm_0"], batch_stats["BatchNorm_0"], "bn1")}
    kind, convs = ("BasicBlock", 2) if depth < 50 else ("BottleneckBlock", 3)
    count = 0
    for stage, blocks in enumerate(STAGE_SIZES[depth]):
        for i in range(blocks):
            name = f"{kind}_{count}"
            p, s, prefix = params[name], batch_stats[name], f"layer{stage + 1}.{i}"
            for j in range(convs):
                out[f"{prefix}.conv{j + 1}.weight"] = conv(p[f"Conv_{j}"]["kernel"])
                out.update(batch_norm(p[f"BatchNorm_{j}"], s[f"BatchNorm_{j}"],
                                      f"{prefix}.bn{j + 1}"))
            if "shortcut_conv" in p:
                out[f"{prefix}.downsample.0.weight"] = conv(p["shortcut_conv"]["kernel"])
                out.update(batch_norm(p["shortcut_bn"], s["shortcut_bn"],
                                      f"{prefix}.downsample.1"))
            count += 1
    return out


def exportable_depth(config):
    """The ResNet depth of a run whose encoder torchvision has, or one clear error."""
    m = config.model
    name = m.encoder
    depth = name[len("resnet"):]
    if not (name.startswith("resnet") and depth.isdigit() and int(depth) in STAGE_SIZES):
        raise UserError(f"The run's encoder is {name!r}; torchvision has a counterpart only "
                        f"for {', '.join(f'resnet{d}' for d in STAGE_SIZES)}.")
    if m.width_multiplier != 1 or m.get("norm", "batch") != "batch":
        raise UserError(f"The run's {name} has width multiplier {m.width_multiplier} and "
                        f"{m.get('norm', 'batch')} normalisation; torchvision's has 1 and "
                        "BatchNorm.")
    return int(depth)


def backbone_variables(encode):
    """(params, batch_stats) of the encoder of ``encode`` (a ``load_encoder`` result), checked
    to be what the run's features are: ``method.image_features`` equals the encoder alone."""
    params = encode.variables["params"].get("encoder")
    stats = (encode.variables.get("batch_stats") or {}).get("encoder", {})
    name = encode.config.method.name
    if params is None:
        raise UserError(f"The {name} network has no single image encoder to export.")
    size, channels = encode.config.eval.image_size, encode.config.data.channels
    x = jax.random.normal(jax.random.key(0), (2, size, size, channels))
    encoder = encode.module.encoder
    alone = encoder.apply({"params": params, "batch_stats": stats}, x, train=False)
    features = encode.method.image_features(encode.variables, x)
    if features.shape != alone.shape or not np.allclose(features, alone, rtol=1e-4,
                                                        atol=1e-5):
        raise UserError(f"The features {name} is evaluated on are not its encoder's output "
                        "alone (e.g. CMC's two encoders, CPC's patch grid); there is no "
                        "torchvision model of them.")
    return jax.device_get(params), jax.device_get(stats)


def save(state_dict, out):
    """``out``: ``.safetensors`` (the safetensors package) or a ``torch.save`` file."""
    if out.endswith(".safetensors"):
        try:
            from safetensors.numpy import save_file
        except ImportError as err:
            raise UserError("Writing .safetensors needs the safetensors package "
                            "(pip install safetensors).") from err
        save_file(state_dict, out)
        return
    try:
        import torch
    except ImportError as err:
        raise UserError("Writing a .pth needs torch (pip install torch), or pass "
                        "--out=FILE.safetensors.") from err
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, out)


def export(workdir, out, fmt="torchvision", step=None):
    """Writes the backbone of the run in ``workdir`` to ``out``; returns the state_dict."""
    from cl_jax.encoder import load_encoder, run_config

    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    if not out:
        raise UserError("Pass --out=FILE.pth (or FILE.safetensors).")
    depth = exportable_depth(run_config(workdir))
    params, stats = backbone_variables(load_encoder(workdir, step))
    state_dict = torchvision_resnet(params, stats, depth)
    save(state_dict, out)
    return state_dict


def main(argv):
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    if f.workdir is None:
        raise app.UsageError("--workdir is required.")
    try:
        state_dict = export(f.workdir, f.out, f.format, f.step)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {f.out}: {len(state_dict)} tensors")


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "The workdir of a training run.")
    flags.DEFINE_string("out", None, "Where the state_dict goes (.pth or .safetensors).")
    flags.DEFINE_string("format", "torchvision", "One of: " + ", ".join(FORMATS))
    flags.DEFINE_integer("step", None, "A checkpoint step (default: the latest).")
    app.run(main)
