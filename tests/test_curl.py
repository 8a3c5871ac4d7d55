"""CURL (Srinivas et al. 2020): the loss from the network's outputs against float64 NumPy
(queries of view 1 online, keys of view 2 from the momentum encoder, the bilinear W), the EMA
of the key encoder, the representation, and the errors.
(The loop runs CURL on 8 devices in test_methods_loop.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch, tiny_config
from test_methods_clustering import compiled_loss

from cl_jax import train
from cl_jax.errors import ConfigError


@pytest.fixture(scope="module")
def setup():
    """The experiment, its initial state, a batch and its loss, compiled once."""
    config = tiny_config("curl", "moving_digits")
    exp = train.create_experiment(config)
    state = jax.device_get(train.initial_state(exp))
    batch = random_batch(exp.config, exp.config.batch_size)
    return exp, state, batch, compiled_loss(exp.method, state, batch)


def latents(network, params, batch_stats, images):
    out = network.apply({"params": params, "batch_stats": batch_stats}, jnp.asarray(images),
                        train=True, mutable=["batch_stats"])[0]
    return np.asarray(out["features"], np.float64)


def bilinear_info_nce(q, k, w):
    logits = q @ w @ k.T
    top = logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return np.mean(log_z - np.diag(logits))


def test_loss_matches_float64_numpy(setup):
    exp, state, batch, loss_fn = setup
    method = exp.method
    assert batch["views"][0].shape[1:] == (16, 16, 3)
    extra = jax.tree.map(jnp.asarray, state.extra)
    # A key encoder apart from the query encoder, so that a swap of the two would show.
    extra["target_params"] = jax.tree.map(lambda p: p * 0.7, extra["target_params"])
    (loss, _), grads = loss_fn(extra, 0)
    q = latents(method.network, state.params, state.batch_stats, batch["views"][0])
    k = latents(method.target_network, extra["target_params"], extra["target_batch_stats"],
                batch["views"][1])
    w = np.asarray(state.params["w"], np.float64)
    assert float(loss) == pytest.approx(bilinear_info_nce(q, k, w), rel=1e-5)
    assert w.min() >= 0 and w.max() < 1  # the reference's torch.rand
    assert set(state.extra["target_params"]) == {"encoder", "head"}
    assert np.abs(np.asarray(grads["w"])).max() > 0


def test_key_encoder_is_the_ema_of_the_query_encoder(setup):
    exp, state, _, loss_fn = setup
    method = exp.method
    extra = jax.tree.map(jnp.asarray, state.extra)
    (_, aux), _ = loss_fn(extra, 0)
    params = jax.tree.map(lambda p: p + 1.0, state.params)
    new = method.update_extra(extra, params, aux, 0)
    m = exp.config.method.momentum
    jax.tree.map(lambda t, o, n: np.testing.assert_allclose(n, m * t + (1 - m) * o, rtol=1e-6),
                 extra["target_params"], {k: params[k] for k in ("encoder", "head")},
                 new["target_params"])


def test_the_representation_is_the_normalised_head(setup):
    exp, state, _, _ = setup
    images = random_batch(exp.config, 4)["views"][0]
    z = exp.method.image_features({"params": state.params, "batch_stats": state.batch_stats},
                                  jnp.asarray(images))
    assert z.shape == (4, exp.config.method.feature_dim)
    np.testing.assert_allclose(np.mean(z, axis=1), 0.0, atol=1e-5)  # LayerNorm, no tanh


@pytest.mark.parametrize("overrides, message", [
    (dict(momentum=1.0), "momentum=1.0 must lie in"),
    (dict(feature_dim=0), "feature_dim=0"),
])
def test_config_errors(overrides, message):
    config = tiny_config("curl", "moving_digits")
    config.method.update(overrides)
    with pytest.raises(ConfigError, match=message):
        train.validate(config)


def test_the_craftax_preset_trains_through_the_loop_on_cached_rollouts(tmp_path):
    """configs/curl.py:craftax on rollouts already in its cache (the package itself is an
    optional extra): the 63x63 RGB stacks, 54x54 views, probes of the facing direction and
    ridge probes of the intrinsics and the light level."""
    rng = np.random.RandomState(0)
    envs, steps = 4, 12
    rollouts = {"frames": rng.randint(0, 256, (envs, steps, 63, 63, 3)).astype(np.uint8),
                "done": np.zeros((envs, steps), bool),
                "direction": rng.randint(1, 5, (envs, steps)),
                "intrinsics": rng.randint(0, 10, (envs, steps, 4)),
                "light_level": rng.uniform(size=(envs, steps))}
    (tmp_path / "data" / "craftax").mkdir(parents=True)
    np.savez(tmp_path / "data" / "craftax" / f"classic_random_{envs}x{steps}_seed0.npz",
             **rollouts)
    config = tiny_config("curl", "craftax")
    config.data.update(data_dir=str(tmp_path / "data"), craftax_envs=envs,
                       craftax_steps=steps)
    config.evals.linear.type = "none"
    config.evals.regression.update(few_examples=5, draws=2)
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert {"knn_top1", "fewshot_top1", "intrinsics_r2", "light_level_r2",
            "fewshot_intrinsics_r2"} <= set(results)
    assert all(np.isfinite(v) for v in results.values())
