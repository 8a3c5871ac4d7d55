"""Methods through the real train step: BYOL's EMA target and loss, SimCLR's loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch, train_steps

from cl_jax.methods import byol as byol_module


def one_step(method_name, **overrides):
    exp, (state, new_state), (metrics,) = train_steps(method_name, 1, **overrides)
    return exp, state, new_state, metrics, random_batch(exp.config, exp.config.batch_size)


def test_byol_target_moves_by_one_minus_tau_toward_online():
    exp, old, new, metrics, _ = one_step("byol")
    tau = exp.config.method.tau_base  # the cosine schedule starts at tau_base
    assert float(metrics["tau"]) == pytest.approx(tau)
    for module in ("encoder", "projector"):
        expected = jax.tree.map(lambda t, o: tau * t + (1 - tau) * o,
                                old.extra["target_params"][module], new.params[module])
        for got, want in zip(jax.tree.leaves(new.extra["target_params"][module]),
                             jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert "predictor" not in new.extra["target_params"]
    moved = [not np.allclose(a, b) for a, b in zip(
        jax.tree.leaves(old.extra["target_batch_stats"]),
        jax.tree.leaves(new.extra["target_batch_stats"]), strict=True)]
    assert all(moved)  # the target network runs BatchNorm in training mode


def test_byol_tau_schedule():
    assert float(byol_module.cosine_ema_decay(0, 100, 0.996)) == pytest.approx(0.996)
    assert float(byol_module.cosine_ema_decay(50, 100, 0.996)) == pytest.approx(0.998)
    assert float(byol_module.cosine_ema_decay(100, 100, 0.996)) == pytest.approx(1.0)


def cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def test_byol_loss_is_symmetrised_sum_of_regression_losses():
    exp, state, _, metrics, batch = one_step("byol")
    network, target = exp.method.network, exp.method.target_network
    views = [np.asarray(v) for v in batch["views"]]
    both = jnp.concatenate(views)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    online, _ = network.apply(variables, both, train=True, mutable=["batch_stats"])
    target_vars = {"params": state.extra["target_params"],
                   "batch_stats": state.extra["target_batch_stats"]}
    targets, _ = target.apply(target_vars, both, train=True, mutable=["batch_stats"])
    p = np.split(np.asarray(online["prediction"], np.float64), 2)
    z = np.split(np.asarray(targets["projection"], np.float64), 2)
    expected = np.mean(2 - 2 * cosine(p[0], z[1])) + np.mean(2 - 2 * cosine(p[1], z[0]))
    assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-5)


def test_simclr_loss_is_nt_xent_of_projections():
    exp, state, _, metrics, batch = one_step("simclr")
    views = [np.asarray(v) for v in batch["views"]]
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    out, _ = exp.method.network.apply(variables, jnp.concatenate(views), train=True,
                                      mutable=["batch_stats"])
    z = np.asarray(out["projection"], np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n, t = len(views[0]), exp.config.method.temperature
    sim = z @ z.T / t
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        losses.append(np.log(np.sum(np.exp(sim[i, others]))) - sim[i, positive])
    assert float(metrics["loss"]) == pytest.approx(np.mean(losses), rel=1e-5)


def test_online_probe_learns_only_from_its_own_loss():
    _, old, new, metrics, _ = one_step("simclr", online_probe=True)
    assert "probe_acc" in metrics and 0.0 <= float(metrics["probe_acc"]) <= 1.0
    assert not np.allclose(old.params["probe"]["kernel"], new.params["probe"]["kernel"])
