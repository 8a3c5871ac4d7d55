"""Optimisers and schedules against hand-computed values."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cl_jax import optim


def optim_config(**overrides):
    c = dict(name="lars", base_lr=0.2, lr_scaling="linear", warmup_epochs=1.0, warmup_steps=-1,
             end_lr_factor=0.0, weight_decay=0.1, momentum=0.0, nesterov=False,
             trust_coefficient=0.001, clip_lr=False, b1=0.9, b2=0.999)
    c.update(overrides)
    return ml_collections.ConfigDict(c)


def test_learning_rate_scaling():
    assert optim.scaled_learning_rate(0.2, 4096, "linear") == pytest.approx(3.2)
    assert optim.scaled_learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8)
    assert optim.scaled_learning_rate(0.1, 4096, "none") == 0.1
    with pytest.raises(ValueError, match="lr_scaling"):
        optim.scaled_learning_rate(0.1, 256, "quadratic")


def test_warmup_then_cosine():
    schedule = optim.learning_rate_schedule(optim_config(), batch_size=512, total_steps=110,
                                            steps_per_epoch=10)
    peak = 0.2 * 512 / 256
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(peak / 2)
    assert float(schedule(10)) == pytest.approx(peak)
    # Cosine over the remaining 100 steps: half-way is peak / 2.
    assert float(schedule(60)) == pytest.approx(peak / 2, rel=1e-5)
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-7)


def lars_reference(ws, gs, lrs, wd, eta, momentum, clip):
    """LARS written from You et al. 2017 (PyTorch-style momentum) with the BYOL exclusions."""
    w, buffer = ws.copy(), np.zeros_like(ws)
    for g, lr in zip(gs, lrs, strict=True):
        if w.ndim < 2:  # biases and norms: plain momentum SGD, no decay, no trust ratio
            update = g
        else:
            update = g + wd * w
            trust = eta * np.linalg.norm(w) / np.linalg.norm(update)
            if clip:
                trust = min(trust / lr, 1.0)
            update = trust * update
        buffer = momentum * buffer + update
        w = w - lr * buffer
    return w


@pytest.mark.parametrize("clip,eta", [(False, 0.001), (True, 0.02), (True, 100.0)])
def test_lars_excludes_biases_and_norms(clip, eta):
    rng = np.random.RandomState(0)
    shapes = {"kernel": (4, 3), "bias": (3,), "scale": (3,)}
    params = {n: rng.randn(*s) for n, s in shapes.items()}
    grads = [{n: rng.randn(*s) for n, s in shapes.items()} for _ in range(3)]
    lrs = [0.5, 0.3, 0.1]
    config = optim_config(momentum=0.9, trust_coefficient=eta, clip_lr=clip)
    tx = optim.create_optimizer(config, lambda count: jnp.asarray(lrs)[count])
    p = {n: jnp.asarray(v) for n, v in params.items()}
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update({n: jnp.asarray(v) for n, v in g.items()}, state, p)
        p = optax.apply_updates(p, updates)
    for n in params:
        expected = lars_reference(params[n], [g[n] for g in grads], lrs, 0.1, eta, 0.9, clip)
        np.testing.assert_allclose(p[n], expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_other_optimisers_skip_decay_on_biases(name):
    tx = optim.create_optimizer(optim_config(name=name, weight_decay=0.5), 0.1)
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
    zero = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros((2,))}
    updates, _ = tx.update(zero, tx.init(params), params)
    assert np.all(np.asarray(updates["bias"]) == 0)
    assert np.all(np.asarray(updates["kernel"]) < 0)


def test_online_probe_has_its_own_optimizer():
    tx = optim.with_online_probe(optim.create_optimizer(optim_config(), 0.0), 0.1, 10)
    params = {"encoder": {"kernel": jnp.ones((2, 2))}, "probe": {"kernel": jnp.ones((2, 2))}}
    grads = jax_tree_ones(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert np.all(np.asarray(updates["encoder"]["kernel"]) == 0)  # main lr is 0
    np.testing.assert_allclose(updates["probe"]["kernel"], -0.1)  # probe SGD at 0.1


def jax_tree_ones(tree):
    return {k: {n: jnp.ones_like(v) for n, v in d.items()} for k, d in tree.items()}


def test_constant_lr_modules_stay_at_the_peak():
    """SimSiam's fixed predictor lr: plain SGD, so an update is -lr * grad."""
    config = optim_config(name="sgd", weight_decay=0.0, constant_lr_modules=("predictor",))
    schedule = lambda count: 0.5 / (1.0 + count)  # decays from the peak 0.5
    tx = optim.create_optimizer(config, schedule, peak_lr=0.5)
    params = {"encoder": {"kernel": jnp.ones((2, 2))}, "predictor": {"kernel": jnp.ones((2, 2))}}
    state = tx.init(params)
    for step in range(3):
        updates, state = tx.update(jax_tree_ones(params), state, params)
        np.testing.assert_allclose(updates["encoder"]["kernel"], -0.5 / (1 + step), rtol=1e-6)
        np.testing.assert_allclose(updates["predictor"]["kernel"], -0.5, rtol=1e-6)
    with pytest.raises(ValueError, match="constant_lr_modules names \\['predictor'\\]"):
        tx.init({"encoder": {"kernel": jnp.ones((2, 2))}})


def test_bias_lr_factor_scales_biases_and_norms_only():
    """Barlow Twins' bias / BatchNorm rate; LARS leaves those out of decay and trust ratio."""
    plain = optim.create_optimizer(optim_config(momentum=0.9), 0.1)
    scaled = optim.create_optimizer(optim_config(momentum=0.9, bias_lr_factor=0.024), 0.1)
    rng = np.random.RandomState(0)
    params = {"kernel": jnp.asarray(rng.randn(3, 2)), "bias": jnp.asarray(rng.randn(2)),
              "scale": jnp.asarray(rng.randn(2))}
    grads = {k: jnp.asarray(rng.randn(*v.shape)) for k, v in params.items()}
    (want, _), (got, _) = (tx.update(grads, tx.init(params), params) for tx in (plain, scaled))
    np.testing.assert_allclose(got["kernel"], want["kernel"], rtol=1e-6)
    for name in ("bias", "scale"):
        np.testing.assert_allclose(got[name], 0.024 * want[name], rtol=1e-6)
