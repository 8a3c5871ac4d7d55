"""SimSiam, Barlow Twins, VICReg, SupCon and SimCLR's loss switch through the real train step.

Each method runs real jitted steps on 8 forced devices; its loss at the first step is
recomputed from the network's outputs on the same batch (float64 NumPy from the paper's
formula; for the SimCLR loss switch, the ``cl_jax.losses`` function the name selects).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, random_batch, tiny_config, train_steps, write_image_folder

from cl_jax import config_lib, losses, methods, models, train
from cl_jax.errors import ConfigError
from cl_jax.methods import supcon as supcon_module

# How each reference forwards the two views: separately (each its own BatchNorm batch:
# facebookresearch/simsiam, barlowtwins and vicreg) or concatenated (SupContrast,
# google-research/simclr).
VIEWS_TOGETHER = {"simsiam": False, "barlow_twins": False, "vicreg": False, "supcon": True,
                  "simclr": True}


def outputs_at(exp, state):
    """{output name: (view 1, view 2)} in float64 of the network in training mode on the batch
    of step 0, the views forwarded as the method's reference does (``VIEWS_TOGETHER``)."""
    batch = random_batch(exp.config, exp.config.batch_size, seed=0)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    apply = jax.jit(lambda v, x: exp.method.network.apply(v, x, train=True,
                                                          mutable=["batch_stats"])[0])
    if VIEWS_TOGETHER[exp.config.method.name]:
        out = apply(variables, jnp.concatenate(batch["views"]))
        return {k: np.split(np.asarray(v, np.float64), 2) for k, v in out.items()}
    outs = [apply(variables, jnp.asarray(v)) for v in batch["views"]]
    return {k: [np.asarray(o[k], np.float64) for o in outs] for k in outs[0]}


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def off_diagonal_squares(m):
    return np.sum(m**2) - np.sum(np.diag(m) ** 2)


def simsiam_loss(m, out, labels, metrics):
    """Paper eq. 4: D(p1, z2) / 2 + D(p2, z1) / 2, D the mean negative cosine."""
    (z1, z2), (p1, p2) = out["projection"], out["prediction"]
    cos = lambda a, b: np.sum(unit(a) * unit(b), axis=1)
    assert float(metrics["z_std"]) == pytest.approx(np.mean(np.std(unit(z1), axis=0)),
                                                    rel=1e-4)
    return 0.5 * np.mean(-cos(p1, z2)) + 0.5 * np.mean(-cos(p2, z1))


def barlow_twins_loss(m, out, labels, metrics):
    """sum (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2, C the batch cross-correlation."""
    z1, z2 = out["projection"]

    def standardize(z):
        z = z - z.mean(axis=0)
        return z / np.sqrt(np.mean(z**2, axis=0) + 1e-5)

    c = standardize(z1).T @ standardize(z2) / len(z1)
    return m.scale_loss * (np.sum((1 - np.diag(c)) ** 2) + m.lambda_ * off_diagonal_squares(c))


def vicreg_loss(m, out, labels, metrics):
    """25 * mse + 25 * mean hinge(1 - std) + 1 * sum off-diagonal cov^2 / D (official code)."""
    z1, z2 = out["projection"]
    n, d = z1.shape

    def variance_and_covariance(z):
        z = z - z.mean(axis=0)
        std = np.sqrt(np.sum(z**2, axis=0) / (n - 1) + 1e-4)
        return np.mean(np.maximum(1 - std, 0)), off_diagonal_squares(z.T @ z / (n - 1)) / d

    (v1, c1), (v2, c2) = variance_and_covariance(z1), variance_and_covariance(z2)
    terms = {"invariance": np.mean((z1 - z2) ** 2), "variance": (v1 + v2) / 2,
             "covariance": c1 + c2}
    for name, value in terms.items():
        assert float(metrics[name]) == pytest.approx(value, rel=1e-4, abs=1e-6)
    return (m.sim_coeff * terms["invariance"] + m.std_coeff * terms["variance"]
            + m.cov_coeff * terms["covariance"])


def supcon_loss(m, out, labels, metrics):
    """Eq. 2 (L_out): per anchor, minus the mean over its positives of the log-softmax."""
    z = unit(np.concatenate(out["projection"]))
    labels = np.tile(labels, 2)
    sim = z @ z.T / m.temperature
    per_anchor = []
    for i in range(len(z)):
        others = [k for k in range(len(z)) if k != i]
        positives = [k for k in others if labels[k] == labels[i]]
        log_denominator = np.log(np.sum(np.exp(sim[i, others])))
        per_anchor.append(-np.mean([sim[i, p] - log_denominator for p in positives]))
    return m.loss_scale * np.mean(per_anchor)


EXPECTED_LOSS = {"simsiam": simsiam_loss, "barlow_twins": barlow_twins_loss,
                 "vicreg": vicreg_loss, "supcon": supcon_loss}


@pytest.mark.parametrize("method", sorted(EXPECTED_LOSS))
def test_two_steps_no_extra_state_and_loss_matches_numpy(method):
    exp, states, metrics = train_steps(method, 2)
    assert all(np.isfinite(m["loss"]) for m in metrics)
    assert all(s.extra == {} for s in states)
    assert not np.allclose(states[0].params["encoder"]["Conv_0"]["kernel"],
                           states[2].params["encoder"]["Conv_0"]["kernel"])
    labels = random_batch(exp.config, exp.config.batch_size, seed=0)["label"]
    expected = EXPECTED_LOSS[method](exp.config.method, outputs_at(exp, states[0]), labels,
                                     metrics[0])
    assert float(metrics[0]["loss"]) == pytest.approx(expected, rel=1e-4)


def output_grads(method, state, batch):
    """d loss / d eps_k for eps_k added to the network's output k (projection, prediction)
    after the predictor has read the projection: the gradient reaching the loss through k."""
    views = tuple(jnp.asarray(v) for v in batch["views"])
    keys = ("projection", "prediction")

    def loss_of(eps):
        seen = [0]  # rows of the views the network's calls have seen so far (view-major)

        def add_eps(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if isinstance(context.module, methods.Network) and context.method_name == "__call__":
                lo, hi = seen[0], seen[0] + len(out["projection"])
                out = dict(out, **{k: out[k] + e[lo:hi] for k, e in zip(keys, eps, strict=True)})
                seen[0] = hi
            return out

        with nn.intercept_methods(add_eps):
            loss, _ = method.loss(state.params, state.batch_stats, state.extra,
                                  {"views": views}, jax.random.key(0), state.step)
        return loss

    shape = (2 * views[0].shape[0], method.config.proj_dim)
    return jax.jit(jax.grad(loss_of))((jnp.zeros(shape), jnp.zeros(shape)))


def test_simsiam_stop_gradient_cuts_the_target_branch():
    exp = train.create_experiment(tiny_config("simsiam"))
    state = jax.device_get(train.initial_state(exp))
    batch = random_batch(exp.config, exp.config.batch_size)
    through_targets, through_predictions = output_grads(exp.method, state, batch)
    assert np.all(np.asarray(through_targets) == 0.0)
    assert np.abs(np.asarray(through_predictions)).max() > 1e-4


def test_supcon_unknown_labels_are_singleton_classes():
    labels = jnp.array([3, -1, 3, -1, 0, -1])
    classes = np.asarray(supcon_module.classes_with_unknown_as_singletons(labels))
    np.testing.assert_array_equal(classes, [3, -2, 3, -4, 0, -6])
    z1, z2 = np.random.RandomState(0).randn(2, 6, 5).astype(np.float32)

    @jax.jit
    def supcon_and_nt_xent(z1, z2):
        classes = supcon_module.classes_with_unknown_as_singletons(-jnp.ones(6, jnp.int32))
        return (losses.supcon(jnp.stack([z1, z2], axis=1), classes, temperature=0.1),
                losses.nt_xent(z1, z2, temperature=0.1))

    unlabelled, nt_xent = supcon_and_nt_xent(z1, z2)
    assert float(unlabelled) == pytest.approx(float(nt_xent), rel=1e-5)


def test_supcon_refuses_unlabelled_training_data(tmp_path):
    write_image_folder(tmp_path / "flat", flat=True)
    config = tiny_config("supcon", "folder")
    config.data.train_dir = str(tmp_path / "flat")
    with pytest.raises(ConfigError, match="needs labels"):
        train.create_experiment(config)


SWITCHED = {
    "dcl": lambda z1, z2, m: losses.dcl(z1, z2, m.temperature),
    "dclw": lambda z1, z2, m: losses.dclw(z1, z2, m.temperature, sigma=m.dclw_sigma),
    "debiased": lambda z1, z2, m: losses.debiased_nt_xent(z1, z2, m.temperature,
                                                          tau_plus=m.tau_plus),
    "hard_negative": lambda z1, z2, m: losses.hard_negative_nt_xent(
        z1, z2, m.temperature, tau_plus=m.tau_plus, beta=m.beta),
}


@pytest.mark.parametrize("loss", sorted(SWITCHED))
def test_simclr_loss_switch_runs_the_named_loss(loss):
    config = tiny_config("simclr")
    config.method.update(loss=loss, temperature=0.5, tau_plus=0.2, beta=0.5, dclw_sigma=0.3)
    exp, (state, _), (metrics,) = train_steps("simclr", 1, config=config)
    z1, z2 = (jnp.asarray(z, jnp.float32) for z in outputs_at(exp, state)["projection"])
    expected = SWITCHED[loss](z1, z2, config.method)
    assert np.isfinite(metrics["loss"])
    assert float(metrics["loss"]) == pytest.approx(float(expected), rel=1e-5)


def simclr_method(**overrides):
    config = tiny_config("simclr")
    config.method.update(overrides)
    return methods.create_method(config.method, models.create_encoder("convnet"))


def test_simclr_loss_switch_errors():
    with pytest.raises(ConfigError, match="nt_xent, dcl, dclw, debiased, hard_negative"):
        simclr_method(loss="infonce")
    with pytest.raises(ConfigError, match="block_size applies only"):
        simclr_method(loss="dcl", block_size=8)
    simclr_method(loss="nt_xent", block_size=8)


def test_dcl_config_is_simclr_with_the_dcl_loss():
    simclr = config_lib.load_config_file(f"{REPO}/configs/simclr.py")
    dcl = config_lib.load_config_file(f"{REPO}/configs/dcl.py")
    assert dcl.method.loss == "dcl" and simclr.method.loss == "nt_xent"
    dcl.method.loss = "nt_xent"
    assert dcl.to_dict() == simclr.to_dict()
    imagenet = config_lib.load_config_file(f"{REPO}/configs/dcl.py:imagenet")
    assert (imagenet.batch_size, imagenet.num_epochs) == (256, 200)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_supcon_mixes_every_view_alike_and_the_probe_learns_the_mixed_targets(kind):
    """``method.mix``: the loss is SupCon of the views mixed with one partner and one lam,
    against targets lam y + (1 - lam) y[perm] built here in NumPy; the probe's loss is the
    cross-entropy against the same targets."""
    from cl_jax import mixing
    from cl_jax import state as state_lib

    config = tiny_config("supcon")
    config.method.update(mix=kind, mix_alpha=1.0)
    exp = train.create_experiment(config)
    state, method = train.initial_state(exp), exp.method
    batch = jax.tree.map(jnp.asarray, random_batch(config, 16, num_classes=4))
    rng = jax.random.key(5)
    loss, aux = method.loss(state.params, state.batch_stats, state.extra, batch, rng, 0)
    mixer = mixing.mixup if kind == "mixup" else mixing.cutmix
    mixed = [mixer(rng, v, 1.0) for v in batch["views"]]
    perm, lam = np.asarray(mixed[0][1]), float(mixed[0][2])
    assert 0 < lam < 1 and all(np.array_equal(m[1], perm) for m in mixed)
    labels = np.asarray(batch["label"])
    targets = lam * np.eye(4)[labels] + (1 - lam) * np.eye(4)[labels[perm]]
    outputs, _ = method.forward(state.params, state.batch_stats, tuple(m[0] for m in mixed))
    features = jnp.stack([o["projection"] for o in outputs], axis=1)
    np.testing.assert_allclose(loss, losses.supcon(features, targets=targets,
                                                   temperature=config.method.temperature),
                               rtol=1e-5)
    probe_loss, _ = state_lib.online_probe_loss(aux.probe_logits, batch["label"], 2,
                                                aux.probe_mix)
    logits = np.asarray(aux.probe_logits, np.float64)  # (2N, the digits' 10 classes)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    targets = np.pad(targets, ((0, 0), (0, logits.shape[1] - 4)))
    np.testing.assert_allclose(probe_loss, -(np.tile(targets, (2, 1)) * log_p).sum(1).mean(),
                               rtol=1e-5)
