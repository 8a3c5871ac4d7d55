"""Train-step options: bfloat16 compute, rematerialisation, colour augmentation on the
device, the CPU library for convolutions; and a train step that compiles once per run."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config, train_steps

from cl_jax import compile_options, data, device_augment, parallel, train
from cl_jax.errors import ConfigError
from cl_jax.models import ResNet


def float_dtypes(tree):
    return {x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def test_bfloat16_compute_keeps_float32_state_and_a_close_loss():
    _, f32_states, f32_metrics = train_steps("simclr", 1)
    config = tiny_config("simclr")
    config.model.dtype = "bfloat16"
    exp, states, metrics = train_steps("simclr", 1, config=config)
    state = states[-1]
    assert exp.method.network.encoder.dtype == jnp.bfloat16
    for tree in (state.params, state.opt_state, state.batch_stats):
        assert float_dtypes(tree) == {np.dtype(np.float32)}
    # Same initial parameters, same batch: the bf16 loss is the f32 one to bf16 precision.
    for a, b in zip(jax.tree.leaves(f32_states[0].params), jax.tree.leaves(states[0].params),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(metrics[0]["loss"]) == pytest.approx(float(f32_metrics[0]["loss"]), rel=2e-2)
    assert np.isfinite(float(metrics[0]["grad_norm"]))


def test_bad_dtype_is_a_config_error():
    config = tiny_config("byol")
    config.model.dtype = "float16"
    with pytest.raises(ConfigError, match="model.dtype must be one of 'float32', 'bfloat16'"):
        train.create_experiment(config)


def test_remat_gives_the_same_loss_and_gradients():
    x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))

    def loss_and_grads(remat):
        model = ResNet(depth=18, stem="cifar", stage_sizes=(1, 1), remat=remat)
        variables = model.init(jax.random.key(1), x)

        def loss(params):
            out, _ = model.apply({**variables, "params": params}, x, mutable=["batch_stats"])
            return jnp.sum(out ** 2)

        return jax.jit(jax.value_and_grad(loss))(variables["params"])

    (plain, plain_grads), (remat, remat_grads) = loss_and_grads(False), loss_and_grads(True)
    assert jax.tree.structure(plain_grads) == jax.tree.structure(remat_grads)  # same names
    np.testing.assert_allclose(remat, plain, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(remat_grads), jax.tree.leaves(plain_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_loop_compiles_its_step_once(monkeypatch, tmp_path):
    """Nothing is traced or compiled between the train loop's first step and its last.

    (Orbax's first save compiles its array copies; the only save here is after the steps.)
    """
    events = []

    def listen(event, *_, **__):
        if "/jax/core/compile" in event:
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    counts = []  # compile events seen before each call of the step
    original = parallel.compile_together

    def counting(jitted, *args):
        compiled = original(jitted, *args)

        def step(*a):
            counts.append(len(events))
            return compiled(*a)

        return step

    monkeypatch.setattr(parallel, "compile_together", counting)
    config = tiny_config("byol")
    config.update(total_steps=5, log_every_steps=2, checkpoint_every_steps=100)
    config.evals.linear.steps = config.evals.fewshot.steps = 10
    config.evals.fewshot.draws = 1
    try:
        train.train_and_evaluate(config, str(tmp_path))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert len(counts) == 5 and counts[0] > 0
    assert counts == [counts[0]] * 5, "something compiled during training"


def test_colour_on_device_trains_through_the_loop(tmp_path):
    """The loop's first loss is BYOL's on its first host batch (cropped and flipped only)
    after the colour ops on the device with the step's key."""
    config = tiny_config("byol")
    config.augment.colour_on_device = True
    config.evals.linear.steps = config.evals.fewshot.steps = 10
    config.evals.fewshot.draws = 1
    train.train_and_evaluate(config, str(tmp_path))
    with open(tmp_path / "metrics.jsonl") as f:
        logged = next(m["loss"] for m in map(json.loads, f) if m.get("step") == 1)
    exp = train.create_experiment(config)
    c = exp.config
    host = next(data.train_dataset(
        exp.train_split, data.view_augments(c.augment), seed=c.seed, global_batch=c.batch_size,
        mean=c.data.mean, std=c.data.std, colour=False,
        fused_crop=c.data.fused_crop).as_numpy_iterator())
    assert all(v.min() >= 0.0 and v.max() <= 1.0 for v in host["views"])  # not normalised
    state = jax.device_get(train.initial_state(exp))
    colour = device_augment.from_config(c)

    @jax.jit
    def first_loss(views, colour_key, rng):
        views = {"views": colour(views, colour_key)}
        return exp.method.loss(state.params, state.batch_stats, state.extra, views, rng, 0)[0]

    rng, colour_key = jax.random.split(jax.random.fold_in(jax.random.key(c.seed), 0))
    assert float(first_loss(host["views"], colour_key, rng)) == pytest.approx(logged, rel=1e-5)
    # Other colour draws give another loss: the check above sees the device's colour ops.
    other = float(first_loss(host["views"], jax.random.key(1), rng))
    assert other != pytest.approx(logged, rel=1e-3)
    views = tuple(jnp.full((4, 8, 8, 1), 0.5) for _ in range(2))
    out = jax.jit(colour)(views, jax.random.key(0))
    assert len(out) == 2 and out[0].shape == (4, 8, 8, 1)
    assert not np.allclose(out[0], out[1])  # per-view, per-example random draws
    assert device_augment.from_config(tiny_config("byol")) is None


def test_cpu_dot_library_choice():
    eigen = compile_options.EIGEN_DOTS
    assert compile_options.for_encoder("resnet18") == eigen  # auto: Eigen for ResNets
    assert compile_options.for_encoder("resnet50", "eigen") == eigen
    assert compile_options.for_encoder("vit_tiny") == {}  # YNNPACK is faster for matmuls
    assert compile_options.for_encoder("convnet") == {}
    assert compile_options.for_encoder("vit_tiny", "eigen") == eigen
    assert compile_options.for_encoder("resnet18", "ynnpack") == {}
    with pytest.raises(ValueError, match="cpu_dot_library must be one of"):
        compile_options.for_encoder("resnet18", "mkl")
    config = tiny_config("byol")
    config.cpu_dot_library = "mkl"
    with pytest.raises(ConfigError, match="cpu_dot_library must be one of 'auto'"):
        train.create_experiment(config)


def ynn_convolutions(compiled_text):
    """How many convolutions XLA put inside YNNPACK fusions."""
    ynn = set(re.findall(r"kind=kCustom, calls=%([\w.\-]+).*__ynn_fusion", compiled_text))
    bodies = re.split(r"\n(?=\S)", compiled_text)
    return sum(b.count("convolution(") for b in bodies if b.split(" ")[0].lstrip("%") in ynn)


def test_eigen_convolutions_move_resnet_convolutions_out_of_ynnpack_with_the_same_numbers():
    model = ResNet(depth=18, stem="cifar", stage_sizes=(1, 1))
    x = jax.random.normal(jax.random.key(0), (8, 16, 16, 3))
    variables = model.init(jax.random.key(1), x)

    def loss(params):
        out, _ = model.apply({**variables, "params": params}, x, mutable=["batch_stats"])
        return jnp.sum(out ** 2)

    def compile_grad(options):
        return jax.jit(jax.value_and_grad(loss), compiler_options=options).lower(
            variables["params"]).compile()

    eigen = compile_options.for_encoder("resnet18", "eigen")
    assert eigen, "this jaxlib does not take the option: cl_jax.compile_options needs updating"
    default, with_eigen = compile_grad({}), compile_grad(eigen)
    assert ynn_convolutions(default.as_text()) >= 10  # 17 convolutions, most in YNNPACK
    assert ynn_convolutions(with_eigen.as_text()) <= 2
    (value, grads), (eigen_value, eigen_grads) = (default(variables["params"]),
                                                  with_eigen(variables["params"]))
    np.testing.assert_allclose(eigen_value, value, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(eigen_grads), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_loop_compiles_resnets_with_eigen_convolutions(monkeypatch):
    config = tiny_config("simclr")
    config.model.update(encoder="resnet18", stem="cifar")
    exp = train.create_experiment(config)
    options = []
    jit = jax.jit

    def spy(fun, **kwargs):
        options.append(kwargs.get("compiler_options"))
        return jit(fun, **kwargs)

    monkeypatch.setattr(jax, "jit", spy)
    train.jit_train_step(exp)
    assert options[-1] == compile_options.EIGEN_DOTS
    exp.config.cpu_dot_library = "ynnpack"
    train.jit_train_step(exp)
    assert options[-1] == {}
