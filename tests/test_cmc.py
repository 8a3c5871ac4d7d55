"""CMC (Tian et al. 2020): the views of one image, the graph of pairs, the memory-bank NCE /
softmax and in-batch objectives against float64 NumPy from the network's outputs, the banks'
update, and one clear error for a config that cannot work."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch, tiny_config
from test_methods_clustering import compiled_loss, normalize

from cl_jax import train
from cl_jax.errors import ConfigError
from cl_jax.methods.cmc import split_views, view_pairs


def test_views_and_graphs():
    x = np.arange(2 * 4 * 3 * 3).reshape(2, 4, 3, 3)
    lab = split_views(x, "channels", ((0,), (1, 2)))
    np.testing.assert_array_equal(lab[0], x[..., :1])
    np.testing.assert_array_equal(lab[1], x[..., 1:])
    top, bottom = split_views(x, "rows", num_bands=2)
    np.testing.assert_array_equal(np.concatenate([top, bottom], axis=1), x)
    assert view_pairs(3, "core") == [(0, 1), (0, 2)]
    assert view_pairs(3, "full") == [(0, 1), (0, 2), (1, 2)]
    assert view_pairs(2, "full") == view_pairs(2, "core") == [(0, 1)]


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.sum(np.exp(x), axis=-1, keepdims=True))


def reference_loss(c, z, banks, index, noise, pairs):
    """float64: for each pair and direction (a -> b), z_a scored against view b's bank."""
    total, log_z = 0.0, []
    n, t = c.num_examples, c.temperature
    for p, (i, j) in enumerate(pairs):
        for a, b in ((i, j), (j, i)):
            rows = np.concatenate([index[:, None], noise[p]], axis=1)  # own row, then noise
            logits = np.einsum("nd,nkd->nk", z[a], banks[b][rows]) / t
            if c.objective == "softmax":
                total += -np.mean(log_softmax(logits)[:, 0])
                continue
            # CMC's NCEAverage (Z from this batch) and NCECriterion.
            out = np.exp(logits)
            zed = out.mean() * n
            log_z.append(np.log(zed))
            p_out, m_pn = out / zed, c.num_noise / n
            total += -np.mean(np.log(p_out[:, 0] / (p_out[:, 0] + m_pn))
                              + np.sum(np.log(m_pn / (p_out[:, 1:] + m_pn)), axis=1))
    return total, log_z


def setup(**overrides):
    """The experiment and its initial state (no train step compiled: the loop runs CMC in
    test_methods_loop.py)."""
    config = tiny_config("cmc")
    config.method.update(overrides)
    exp = train.create_experiment(config)
    return exp, jax.device_get(train.initial_state(exp))


def projections(exp, state, images):
    out = exp.method.network.apply({"params": state.params, "batch_stats": state.batch_stats},
                                   jnp.asarray(images), train=True, mutable=["batch_stats"])[0]
    return [np.asarray(v, np.float64) for v in out["projections"]]


@pytest.mark.parametrize("objective,graph", [("softmax", "core"), ("nce", "full"),
                                             ("in_batch", "full")])
def test_loss_matches_float64_numpy(objective, graph):
    exp, state = setup(num_bands=4, graph=graph, objective=objective, num_noise=6)
    method, c = exp.method, exp.config.method
    batch = random_batch(exp.config, exp.config.batch_size)
    (loss, aux), _ = compiled_loss(method, state, batch)(jax.tree.map(jnp.asarray, state.extra),
                                                         0, key=3)
    z = projections(exp, state, batch["views"][0])
    pairs = view_pairs(4, graph)
    assert len(pairs) == (3 if graph == "core" else 6)
    if objective == "in_batch":
        def info_nce(q, k):
            return -np.mean(np.diag(log_softmax(normalize(q) @ normalize(k).T / c.temperature)))
        expected = sum(info_nce(z[i], z[j]) + info_nce(z[j], z[i]) for i, j in pairs)
        assert float(loss) == pytest.approx(expected, rel=1e-5)
        assert state.extra == {}
        return
    index = batch["index"]
    noise = [np.asarray(jax.random.randint(jax.random.fold_in(jax.random.key(3), p),
                                           (len(index), c.num_noise), 0, c.num_examples))
             for p in range(len(pairs))]
    banks = [np.asarray(b, np.float64) for b in state.extra["banks"]]
    expected, log_z = reference_loss(c, z, banks, index, noise, pairs)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    if objective == "nce":
        np.testing.assert_allclose(aux.extra["log_z"], log_z, rtol=1e-5)
        # The banks' update, after the optimiser's: the batch's rows only; Z kept from then on.
        new = method.update_extra(jax.tree.map(jnp.asarray, state.extra), state.params, aux, 0)
        m = c.bank_momentum
        for v, bank in enumerate(banks):
            np.testing.assert_allclose(new["banks"][v][index],
                                       normalize(m * bank[index] + (1 - m) * z[v]), atol=1e-5)
            others = np.setdiff1d(np.arange(len(bank)), index)
            np.testing.assert_array_equal(new["banks"][v][others], bank[others])
        assert bool(new["has_z"])
        (_, again), _ = compiled_loss(method, state, batch)(new, 1, key=4)
        np.testing.assert_array_equal(again.extra["log_z"], new["log_z"])


def test_features_are_both_encoders_concatenated():
    exp, state = setup()
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    images = jnp.asarray(random_batch(exp.config, 4)["views"][0])
    features = exp.method.image_features(variables, images)
    top, bottom = split_views(images, "rows", num_bands=2)
    network = exp.method.network
    parts = [network.apply(variables, part, False, method=lambda mod, x, t, v=v:
                           mod.encoders[v](x, t)) for v, part in enumerate((top, bottom))]
    np.testing.assert_allclose(features, np.concatenate(parts, axis=-1), rtol=1e-5, atol=1e-6)
    assert features.shape == (4, 2 * exp.config.model.widths[-1])


@pytest.mark.parametrize("overrides,message", [
    (dict(split="channels", channel_groups=((0,), (1, 2))), "channel_groups"),
    (dict(num_bands=3), "num_bands=3 must"),
    (dict(objective="nce", num_noise=0), "num_noise > 0"),
    (dict(graph="star"), "method.graph"),
])
def test_config_errors(overrides, message):
    config = tiny_config("cmc")
    config.method.update(overrides)
    with pytest.raises(ConfigError, match=message):
        train.create_experiment(config)


def test_lab_needs_rgb_images_and_host_colour_ops():
    config = tiny_config("cmc")
    config.data.update(color_space="lab")
    with pytest.raises(ConfigError, match="data.channels is 1"):
        train.create_experiment(config)
    rgb = copy.deepcopy(config)
    rgb.data.channels = 3
    rgb.augment.colour_on_device = True
    with pytest.raises(ConfigError, match="colour_on_device=False"):
        train.create_experiment(rgb)
    rgb.data.color_space = "hsv"
    with pytest.raises(ConfigError, match="data.color_space is 'hsv'"):
        train.create_experiment(rgb)
