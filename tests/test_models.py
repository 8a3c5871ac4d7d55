"""Backbones and heads: shapes, parameter counts, BatchNorm modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_jax import models


def param_count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name,stem,size,width", [
    ("resnet18", "cifar", 32, 512),
    ("resnet18", "imagenet", 64, 512),
    ("resnet50", "imagenet", 64, 2048),
])
def test_resnet_output_width(name, stem, size, width):
    model = models.create_encoder(name, stem=stem)
    x = jnp.zeros((2, size, size, 3))
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    out = jax.eval_shape(lambda v: model.apply(v, x, train=False), shapes)
    assert out.shape == (2, width)


def test_resnet_parameter_counts_match_torchvision():
    # torchvision: resnet18 11,689,512 and resnet50 25,557,032 parameters including the
    # 1000-way fc layer (513,000 and 2,049,000 parameters); BatchNorm scale/bias included.
    expected_counts = {"resnet18": 11_689_512 - 513_000, "resnet50": 25_557_032 - 2_049_000}
    for name, expected in expected_counts.items():
        model = models.create_encoder(name)
        shapes = jax.eval_shape(lambda m=model: m.init(jax.random.key(0),
                                                      jnp.zeros((1, 64, 64, 3)), train=False))
        assert param_count(shapes["params"]) == expected


def test_stems():
    x = jnp.zeros((1, 32, 32, 3))
    for stem, kernel in (("cifar", (3, 3)), ("imagenet", (7, 7))):
        model = models.create_encoder("resnet18", stem=stem)
        variables = model.init(jax.random.key(0), x, train=False)
        assert variables["params"]["Conv_0"]["kernel"].shape[:2] == kernel


def test_zero_init_residual_makes_blocks_identity_at_init():
    model = models.create_encoder("resnet18", stem="cifar", zero_init_residual=True)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), train=False)
    scales = [v["scale"] for k, v in variables["params"]["BasicBlock_0"].items()
              if k.startswith("BatchNorm")]
    assert np.all(np.asarray(scales[-1]) == 0)


def test_convnet_and_mlp_head_train_and_eval_modes():
    encoder = models.ConvNet(widths=(8, 16))
    x = jax.random.normal(jax.random.key(1), (6, 8, 8, 1))
    variables = encoder.init(jax.random.key(0), x, train=True)
    features, updates = encoder.apply(variables, x, train=True, mutable=["batch_stats"])
    assert features.shape == (6, 16)
    moved = jax.tree.map(lambda a, b: not np.allclose(a, b), variables["batch_stats"],
                         updates["batch_stats"])
    assert all(jax.tree.leaves(moved))  # running statistics update in training mode
    head = models.MLP(hidden_dims=(32,), output_dim=4, output_norm=True)
    head_vars = head.init(jax.random.key(0), features, train=True)
    out, _ = head.apply(head_vars, features, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)  # output BatchNorm, training mode
    assert "bias" not in head_vars["params"]["Dense_0"]  # bias is redundant before BatchNorm


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown encoder"):
        models.create_encoder("vgg16")
