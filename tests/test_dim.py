"""Deep InfoMax (Hjelm et al. 2019): the encoder's feature maps, the local and global MI terms
against float64 NumPy from the network's outputs, the prior-matching game's gradients (each
side trains only its own parameters), and one clear error for a config that cannot work."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch, tiny_config

from cl_jax import losses, train
from cl_jax.errors import ConfigError
from cl_jax.methods.dim import MIConvNet
from cl_jax.models import ConvNet, ResNet


def test_encoders_return_their_stage_maps():
    x = jnp.ones((2, 8, 8, 1))
    net = ConvNet(widths=(4, 6, 8))
    variables = net.init(jax.random.key(0), x, train=False)
    features, maps = net.apply(variables, x, False, return_maps=True)
    assert [m.shape for m in maps] == [(2, 8, 8, 4), (2, 4, 4, 6), (2, 2, 2, 8)]
    np.testing.assert_array_equal(features, net.apply(variables, x, False))
    np.testing.assert_allclose(features, maps[-1].mean(axis=(1, 2)), rtol=1e-6)
    resnet = ResNet(depth=18, stem="cifar", stage_sizes=(1, 1, 1, 1))
    variables = resnet.init(jax.random.key(0), x, train=False)
    _, maps = resnet.apply(variables, x, False, return_maps=True)
    assert [m.shape[1:] for m in maps] == [(8, 8, 64), (4, 4, 128), (2, 2, 256), (1, 1, 512)]


def test_mi_network_starts_near_the_identity_shortcut():
    net = MIConvNet(units=6)
    x = jnp.ones((3, 4))
    params = net.init(jax.random.key(0), x, train=False)["params"]
    kernel = np.asarray(params["Dense_0"]["kernel"])
    assert kernel.shape == (4, 6)
    np.testing.assert_array_equal(np.diag(kernel), 1.0)
    off = kernel[~np.eye(4, 6, dtype=bool)]
    assert np.abs(off).max() <= 0.01 and np.abs(off).max() > 0


def softplus(x):
    return np.logaddexp(0.0, x)


def jsd_numpy(local, global_):
    """DIM's JSD (log 2 shifts kept): mean over the positive and the negative pairs."""
    scores = np.einsum("bmd,cd->bmc", local, global_)
    own = np.eye(len(global_), dtype=bool)[:, None, :].repeat(local.shape[1], axis=1)
    e_pos = np.mean(math.log(2) - softplus(-scores[own]))
    e_neg = np.mean(softplus(scores[~own]) - math.log(2))
    return e_neg - e_pos


def setup(**overrides):
    config = tiny_config("dim")
    config.method.update(dict(measure="jsd", **overrides))  # the NumPy reference's estimator
    exp = train.create_experiment(config)
    state = jax.device_get(train.initial_state(exp))
    batch = random_batch(exp.config, exp.config.batch_size)
    return exp, state, tuple(jnp.asarray(v) for v in batch["views"][:1])


def test_mi_terms_match_float64_numpy_and_each_side_of_the_prior_game_trains_its_own():
    exp, state, views = setup(alpha=0.5, beta=1.0, gamma=0.1)
    method = exp.method

    def loss(params):
        return method.loss(params, state.batch_stats, {}, {"views": views}, jax.random.key(3), 0)

    (total, aux), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(state.params)

    def sides(params):
        out = method.network.apply({"params": params, "batch_stats": state.batch_stats},
                                   views[0], train=True, mutable=["batch_stats"])[0]
        return method.prior_matching(params["discriminator"], out["y"], jax.random.key(3)), out

    (fooled, disc), out = sides(state.params)
    out64 = {k: np.asarray(v, np.float64) for k, v in out.items()}
    local = jsd_numpy(out64["local"], out64["local_global"])
    global_ = jsd_numpy(out64["map_code"][:, None], out64["y_code"])
    assert out64["local"].shape[1] == 16  # the 4x4 map of stage 1
    assert float(aux.metrics["local_mi_loss"]) == pytest.approx(local, rel=1e-5, abs=1e-6)
    assert float(aux.metrics["global_mi_loss"]) == pytest.approx(global_, rel=1e-5, abs=1e-6)
    expected = local + 0.5 * global_ + 0.1 * float(fooled) + float(disc)
    assert float(total) == pytest.approx(expected, rel=1e-5, abs=1e-6)

    # The discriminator's gradient is its own loss's; the encoder's has no part of it.
    disc_grads = jax.grad(lambda p: sides(p)[0][1])(state.params)["discriminator"]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 grads["discriminator"], disc_grads)

    def encoder_side(params):
        (fooled, _), out = sides(params)
        mi = losses.dim_local_global(out["local"], out["local_global"])
        mi_global = losses.dim_local_global(out["map_code"][:, None], out["y_code"])
        return mi + 0.5 * mi_global + 0.1 * fooled

    rest = jax.grad(encoder_side)(state.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 grads["encoder"], rest["encoder"])
    assert np.abs(np.asarray(grads["encoder"]["Conv_0"]["kernel"])).sum() > 0
    assert {"prior_loss", "discriminator_loss"} <= set(aux.metrics)
    config = tiny_config("dim")
    config.method.gamma = 0.0
    no_prior = train.create_experiment(config)
    assert "discriminator" not in jax.eval_shape(train.state_init_fn(no_prior),
                                                 jax.random.key(0)).params


def test_the_evaluated_feature_is_the_pooled_encoder_output():
    exp, state, views = setup()
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    encoder = ConvNet(widths=tuple(exp.config.model.widths))
    expected = encoder.apply({"params": state.params["encoder"],
                              "batch_stats": state.batch_stats["encoder"]}, views[0], False)
    np.testing.assert_allclose(exp.method.image_features(variables, views[0]), expected,
                               rtol=1e-6)


@pytest.mark.parametrize("overrides,message", [
    (dict(measure="mine"), "method.measure"),
    (dict(alpha=0.0, beta=0.0), "alpha or beta > 0"),
    (dict(local_stage=5), "local_stage=5"),
])
def test_config_errors(overrides, message):
    config = tiny_config("dim")
    config.method.update(overrides)
    with pytest.raises(ConfigError, match=message):
        train.create_experiment(config)
    config = tiny_config("dim")
    config.model.encoder = "vit_tiny"
    with pytest.raises(ConfigError, match="feature maps"):
        train.create_experiment(config)
