"""``python -m cl_jax.export``: a run's ResNet as a torchvision state_dict. The comparison
with torchvision itself is skipped where torch / torchvision are not installed."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO, tiny_config

import cl_jax
from cl_jax import export
from cl_jax.checkpoint import Checkpointer
from cl_jax.errors import UserError
from cl_jax.state import create_method


def saved_run(workdir, **model):
    """A BYOL digits run on ``model``: its config and a checkpoint of the encoder's variables
    (all ``load_encoder`` reads), the BatchNorm statistics made random so that a mix-up of
    means and variances shows."""
    config = tiny_config("byol")
    config.model.update(model)
    encoder = create_method(config, 0, 1, 1).network.encoder
    variables = jax.jit(encoder.init, static_argnames="train")(
        jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32), train=False)
    rng = np.random.RandomState(0)
    stats = jax.tree_util.tree_map_with_path(
        lambda path, x: rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
        if path[-1].key == "var" else rng.normal(0, 0.2, x.shape).astype(np.float32),
        jax.device_get(variables.get("batch_stats", {})))
    workdir.mkdir(exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort())
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), 1, asynchronous=False)
    checkpointer.save(0, {"params": {"encoder": variables["params"]},
                          "batch_stats": {"encoder": stats}}, force=True)
    checkpointer.close()
    return workdir


@pytest.fixture(scope="module", params=["imagenet", "cifar"])
def resnet_run(request, tmp_path_factory):
    return saved_run(tmp_path_factory.mktemp(request.param), encoder="resnet18",
                     stem=request.param), request.param


def test_the_state_dict_has_torchvisions_names_and_shapes(resnet_run, tmp_path):
    workdir, stem = resnet_run
    out = str(tmp_path / "resnet18.safetensors")
    written = export.export(str(workdir), out)
    from safetensors.numpy import load_file

    saved = load_file(out)
    assert sorted(saved) == sorted(written)
    # torchvision's resnet18: 20 convolutions (17 + 3 downsample) and 20 BatchNorms (5 entries
    # each); no fc.
    assert len(saved) == 20 + 20 * 5 and "fc.weight" not in saved
    assert saved["conv1.weight"].shape == ((64, 1, 7, 7) if stem == "imagenet" else (64, 1, 3, 3))
    assert saved["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert saved["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert "layer1.0.downsample.0.weight" not in saved
    encode = cl_jax.load_encoder(str(workdir))
    block = jax.device_get(encode.variables["params"]["encoder"]["BasicBlock_2"])
    np.testing.assert_array_equal(saved["layer2.0.conv1.weight"][5, 3],
                                  block["Conv_0"]["kernel"][:, :, 3, 5])
    stats = jax.device_get(encode.variables["batch_stats"]["encoder"]["BasicBlock_2"])
    np.testing.assert_array_equal(saved["layer2.0.bn2.running_var"], stats["BatchNorm_1"]["var"])


def test_torchvision_gives_the_runs_features(resnet_run, tmp_path):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    workdir, stem = resnet_run
    out = str(tmp_path / "resnet18.pth")
    export.export(str(workdir), out)
    model = torchvision.models.resnet18()
    model.fc = torch.nn.Identity()
    model.conv1 = torch.nn.Conv2d(1, 64, 7 if stem == "imagenet" else 3,
                                  2 if stem == "imagenet" else 1,
                                  3 if stem == "imagenet" else 1, bias=False)
    if stem == "cifar":
        model.maxpool = torch.nn.Identity()
    model.load_state_dict(torch.load(out))
    encode = cl_jax.load_encoder(str(workdir))
    images = np.random.RandomState(1).randint(0, 256, (6, 8, 8, 1)).astype(np.uint8)
    c = encode.config.data
    normalised = (images / np.float32(255) - np.float32(c.mean)) / np.float32(c.std)
    with torch.no_grad():
        got = model.eval()(torch.from_numpy(normalised.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(got, encode(images), rtol=1e-4, atol=1e-5)


def test_an_encoder_without_a_torchvision_counterpart_is_one_clear_error(tmp_path):
    workdir = saved_run(tmp_path / "convnet")
    result = subprocess.run([sys.executable, "-m", "cl_jax.export", f"--workdir={workdir}",
                             f"--out={tmp_path / 'x.pth'}"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: The run's encoder is 'convnet'; torchvision has a counterpart only for "
        "resnet18, resnet34, resnet50, resnet101.")
    assert not (tmp_path / "x.pth").exists()
    with pytest.raises(UserError, match="width multiplier 2 and batch normalisation"):
        export.exportable_depth(_config(encoder="resnet50", width_multiplier=2))
    with pytest.raises(UserError, match="--format must be one of torchvision"):
        export.export(str(workdir), "x.pth", fmt="timm")


def _config(**model):
    config = tiny_config("byol")
    config.model.update(model)
    return config
