"""Optimisers and schedules against hand-computed values."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cl_jax import models, optim
from cl_jax.errors import ConfigError


def optim_config(**overrides):
    c = dict(name="lars", base_lr=0.2, lr_scaling="linear", warmup_epochs=1.0, warmup_steps=-1,
             end_lr_factor=0.0, weight_decay=0.1, momentum=0.0, nesterov=False,
             trust_coefficient=0.001, clip_lr=False, b1=0.9, b2=0.999, lamb_eps=1e-6)
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


def test_warmup_then_linear_decay_as_hugging_face():
    config = optim_config()
    config.schedule = "linear"
    schedule = optim.learning_rate_schedule(config, batch_size=512, total_steps=110,
                                            steps_per_epoch=10)
    peak = 0.2 * 512 / 256
    assert float(schedule(5)) == pytest.approx(peak / 2)
    assert float(schedule(10)) == pytest.approx(peak)
    # get_linear_schedule_with_warmup: peak * (110 - t) / (110 - 10) after the warmup.
    for t in (35, 60, 100):
        assert float(schedule(t)) == pytest.approx(peak * (110 - t) / 100, rel=1e-5)
    config.schedule = "step"
    with pytest.raises(ConfigError, match="optim.schedule"):
        optim.learning_rate_schedule(config, 512, 110, 10)


def lars_reference(ws, gs, lrs, wd, eta, momentum, clip, adapt):
    """LARS written from You et al. 2017 (PyTorch-style momentum); ``adapt=False`` (biases and
    norms, BYOL's exclusions): plain momentum SGD, no decay, no trust ratio."""
    w, buffer = ws.copy(), np.zeros_like(ws)
    for g, lr in zip(gs, lrs, strict=True):
        update = g
        if adapt:
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
        expected = lars_reference(params[n], [g[n] for g in grads], lrs, 0.1, eta, 0.9, clip,
                                  adapt=n == "kernel")
        np.testing.assert_allclose(p[n], expected, rtol=1e-5)


def lamb_reference(w, gs, lrs, wd, b1, b2, eps, adapt):
    """LAMB from You et al. 2020, algorithm 2 (phi the identity); ``adapt=False``: plain Adam.

    The trust ratio is 1 where ``|w|`` or ``|r|`` is 0, as in optax's ``scale_by_trust_ratio``
    (no epsilon in the ratio).
    """
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(gs, lrs, strict=True), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        r = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        if adapt:
            r = r + wd * w
            w_norm, r_norm = np.linalg.norm(w), np.linalg.norm(r)
            r = r * (w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0)
        w = w - lr * r
    return w


def test_lamb_matches_algorithm_2():
    """A kernel, a zero-initialised kernel (trust ratio 1 at the first step) and a bias."""
    rng = np.random.RandomState(0)
    params = {"kernel": rng.randn(4, 3), "zero_kernel": np.zeros((3, 2)), "bias": rng.randn(3)}
    grads = [{n: rng.randn(*v.shape) for n, v in params.items()} for _ in range(4)]
    lrs = [0.05, 0.1, 0.03, 0.01]
    # eps large enough to matter (outside the square root), b1 / b2 off their defaults.
    config = optim_config(name="lamb", weight_decay=0.3, b1=0.8, b2=0.95, lamb_eps=0.1)
    tx = optim.create_optimizer(config, lambda count: jnp.asarray(lrs)[count])
    p = {n: jnp.asarray(v) for n, v in params.items()}
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update({n: jnp.asarray(v) for n, v in g.items()}, state, p)
        p = optax.apply_updates(p, updates)
    for n in params:
        expected = lamb_reference(params[n], [g[n] for g in grads], lrs, 0.3, 0.8, 0.95, 0.1,
                                  adapt=n != "bias")
        np.testing.assert_allclose(p[n], expected, rtol=2e-5, atol=1e-7, err_msg=n)


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
    with pytest.raises(ConfigError, match="constant_lr_modules names \\['predictor'\\]"):
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


def test_frozen_modules_never_change_and_compose():
    """LiT's locked tower, beside SimSiam's constant-lr predictor and a bias lr factor.

    SGD with momentum 0.9, constant gradients ``g``: the trace after step ``t`` is
    ``g * sum_{k<=t} 0.9^k``; the update ``-lr * trace`` (times the factor for biases).
    """
    config = optim_config(name="sgd", weight_decay=0.0, momentum=0.9, bias_lr_factor=0.5,
                          constant_lr_modules=("predictor",), frozen_modules=("encoder",))
    schedule = lambda count: 0.4 / (1.0 + count)
    tx = optim.create_optimizer(config, schedule, peak_lr=0.4)
    rng = np.random.RandomState(0)
    shapes = {"encoder": {"kernel": (5, 7), "bias": (7,)},
              "predictor": {"kernel": (2, 3), "bias": (3,)},
              "projector": {"kernel": (3, 2), "bias": (2,)}}
    params = {m: {n: jnp.asarray(rng.randn(*s)) for n, s in d.items()} for m, d in shapes.items()}
    grads = {m: {n: jnp.asarray(rng.randn(*s)) for n, s in d.items()} for m, d in shapes.items()}
    state = tx.init(params)
    # The momentum buffers exist for the trained modules only.
    state_shapes = {x.shape for x in jax.tree.leaves(state)}
    assert {(2, 3), (3, 2)} <= state_shapes and not {(5, 7), (7,)} & state_shapes
    p = params
    for step in range(3):
        updates, state = tx.update(grads, state, p)
        p = optax.apply_updates(p, updates)
        trace = sum(0.9**k for k in range(step + 1))
        for module, lr in (("projector", 0.4 / (1 + step)), ("predictor", 0.4)):
            for name, factor in (("kernel", 1.0), ("bias", 0.5)):
                np.testing.assert_allclose(updates[module][name],
                                           -factor * lr * trace * grads[module][name], rtol=1e-5)
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(p["encoder"][name], params["encoder"][name])
        assert not np.array_equal(p["projector"][name], params["projector"][name])

    wrong = optim.create_optimizer(optim_config(frozen_modules=("image_tower",)), 0.1)
    with pytest.raises(ConfigError, match=r"frozen_modules names \['image_tower'\], but the "
                       r"network's top-level modules are \['encoder', 'predictor', 'projector'\]"):
        wrong.init(params)


# --- which parameters of a real ResNet get decay and trust ratio ----------------------------


@pytest.fixture(scope="module")
def resnet_params():
    """ResNet-18 (CIFAR stem) and a projector head (Dense biases), every parameter 0.5."""
    encoder, head = models.ResNet(depth=18, stem="cifar"), models.MLP((16,), 8)

    def init(key):
        return {"encoder": encoder.init(key, jnp.zeros((1, 8, 8, 3)))["params"],
                "projector": head.init(key, jnp.zeros((1, 512)))["params"]}

    shapes = jax.eval_shape(init, jax.random.key(0))
    return jax.tree.map(lambda s: jnp.full(s.shape, 0.5), shapes)


def by_path(tree):
    return {"/".join(k.key for k in path): np.asarray(x)
            for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def resnet_kernels(paths):
    """The Conv and Dense kernels, by name (SimCLR excludes ``batch_normalization`` and
    ``bias``): the parameters that get weight decay and the trust ratio."""
    module_and_leaf = {tuple(p.split("/")[-2:]) for p in paths}
    assert {leaf for _, leaf in module_and_leaf} == {"kernel", "scale", "bias"}
    assert all(m.startswith(("Conv_", "shortcut_conv", "Dense_")) for m, leaf in module_and_leaf
               if leaf == "kernel")
    assert all(m.startswith(("BatchNorm_", "shortcut_bn")) or (m.startswith("Dense_")
               and leaf == "bias") for m, leaf in module_and_leaf if leaf != "kernel")
    kernels = {p for p in paths if p.endswith("/kernel")}
    # ResNet-18, CIFAR stem: 1 stem + 16 block + 3 shortcut convolutions; 2 Dense layers.
    assert len(kernels) == 22 and len(paths) - len(kernels) == 43
    assert {"encoder/Conv_0/kernel", "encoder/BasicBlock_2/shortcut_conv/kernel",
            "projector/Dense_0/kernel"} <= kernels
    assert not {"encoder/BatchNorm_0/scale", "encoder/BasicBlock_2/shortcut_bn/bias",
                "projector/Dense_1/bias"} & kernels
    return kernels


LR, WD, ETA, EPS = 0.1, 0.5, 0.001, 1e-6


@pytest.mark.parametrize("name,wd,grad,bias_lr_factor,kernel_step,other_step", [
    # Zero gradients: only decayed parameters move, by lr * trust * wd * w.
    pytest.param("sgd", WD, 0.0, 1.0, LR * WD * 0.5, 0.0, id="sgd-decay"),
    pytest.param("adamw", WD, 0.0, 1.0, LR * WD * 0.5, 0.0, id="adamw-decay"),
    # trust eta |w| / |wd w| = eta / wd
    pytest.param("lars", WD, 0.0, 1.0, LR * ETA * 0.5, 0.0, id="lars-decay"),
    # Adam's part is 0; trust |w| / |wd w| = 1 / wd
    pytest.param("lamb", WD, 0.0, 1.0, LR * 0.5, 0.0, id="lamb-decay"),
    # Unit gradients, no decay: the trust ratio scales only kernels.
    pytest.param("lars", 0.0, 1.0, 1.0, LR * ETA * 0.5, LR, id="lars-trust"),  # eta |w| / |g|
    # Adam's r = 1 / (1 + eps); trust |w| / |r|
    pytest.param("lamb", 0.0, 1.0, 1.0, LR * 0.5, LR / (1 + EPS), id="lamb-trust"),
    # The bias / BatchNorm learning-rate factor.
    pytest.param("sgd", 0.0, 1.0, 0.25, LR, 0.25 * LR, id="sgd-bias-lr-factor"),
])
def test_resnet_parameters_by_name(resnet_params, name, wd, grad, bias_lr_factor, kernel_step,
                                   other_step):
    config = optim_config(name=name, weight_decay=wd, trust_coefficient=ETA, lamb_eps=EPS,
                          bias_lr_factor=bias_lr_factor)
    tx = optim.create_optimizer(config, LR)
    grads = jax.tree.map(lambda w: jnp.full_like(w, grad), resnet_params)
    first_update = jax.jit(lambda p, g: tx.update(g, tx.init(p), p)[0])  # one compilation
    updates = by_path(first_update(resnet_params, grads))
    kernels = resnet_kernels(updates)
    for path, update in updates.items():
        step = kernel_step if path in kernels else other_step
        np.testing.assert_allclose(update, np.full(update.shape, -step), rtol=1e-5, atol=1e-12,
                                   err_msg=path)
