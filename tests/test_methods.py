"""Methods through the real train step: BYOL's EMA target and loss, SimCLR's loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch, train_steps

from cl_jax.state import loss_and_grads


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


def cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def test_byol_loss_is_symmetrised_sum_of_regression_losses():
    exp, state, _, metrics, batch = one_step("byol")
    network, target = exp.method.network, exp.method.target_network
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    target_vars = {"params": state.extra["target_params"],
                   "batch_stats": state.extra["target_batch_stats"]}
    p, z = [], []
    for view in batch["views"]:  # each view its own BatchNorm batch, as the BYOL reference
        online, _ = network.apply(variables, view, train=True, mutable=["batch_stats"])
        targets, _ = target.apply(target_vars, view, train=True, mutable=["batch_stats"])
        p.append(np.asarray(online["prediction"], np.float64))
        z.append(np.asarray(targets["projection"], np.float64))
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


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_online_probe_learns_only_from_its_own_loss():
    exp, old, new, metrics, batch = one_step("simclr", online_probe=True)
    method, lr = exp.method, exp.config.probe_lr
    rng = jax.random.fold_in(jax.random.key(exp.config.seed), 0)  # the step's key at step 0

    @jax.jit
    def gradients(state, batch):
        _, _, full = loss_and_grads(method, state, batch, rng)
        inputs = {k: batch[k] for k in method.inputs}
        alone = jax.grad(lambda p: method.loss(p, state.batch_stats, state.extra, inputs, rng,
                                               state.step)[0])(state.params)
        return full, alone

    full, alone = gradients(old, batch)
    # The representation learns from the method's loss alone: the probe adds no gradient.
    assert all(not np.any(g) for g in jax.tree.leaves(alone["probe"]))
    for module in set(alone) - {"probe"}:
        for got, want in zip(jax.tree.leaves(full[module]), jax.tree.leaves(alone[module]),
                             strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # The probe: softmax regression on both views' features (SimCLR concatenates the views),
    # labels repeated per view; its first SGD step (momentum 0.9, no decay yet) is -lr * grad.
    out, _ = method.network.apply({"params": old.params, "batch_stats": old.batch_stats},
                                  jnp.concatenate(batch["views"]), train=True,
                                  mutable=["batch_stats"])
    features = np.asarray(out["features"], np.float64)
    kernel, bias = (np.asarray(old.params["probe"][k], np.float64) for k in ("kernel", "bias"))
    labels = np.tile(batch["label"], 2)
    probs = softmax(features @ kernel + bias)
    onehot = np.eye(kernel.shape[1])[labels]
    ce = -np.mean(np.log(probs[np.arange(len(labels)), labels]))
    assert float(metrics["probe_loss"]) == pytest.approx(ce, rel=1e-5)
    assert float(metrics["probe_acc"]) == np.mean(probs.argmax(axis=1) == labels)
    grad_kernel = features.T @ (probs - onehot) / len(labels)
    np.testing.assert_allclose(full["probe"]["kernel"], grad_kernel, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(new.params["probe"]["kernel"] - old.params["probe"]["kernel"],
                               -lr * grad_kernel, rtol=1e-3, atol=1e-8)
