"""The ``finetune`` evaluator: SimCLR's semi-supervised fine-tuning of encoder and head."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import tiny_config

from cl_jax import config_lib, mixing, train
from cl_jax.errors import ConfigError
from cl_jax.evaluation import check_evals, registry
from cl_jax.evaluation import finetune as finetuning


def settings(**changes):
    return ml_collections.ConfigDict(dict(config_lib.base_config().evals.finetune, **changes))


def test_the_subset_is_class_balanced_and_seeded():
    labels = np.repeat(np.arange(4), [100, 50, 7, 1])
    rows = finetuning.balanced_subset(np.concatenate([labels, [-1, -1]]), 0.1, seed=3)
    np.testing.assert_array_equal(np.bincount(labels[rows]), [10, 5, 1, 1])  # at least one
    assert len(set(rows)) == len(rows) and (rows < len(labels)).all()  # no unlabelled row
    np.testing.assert_array_equal(rows, finetuning.balanced_subset(labels, 0.1, seed=3))
    assert not np.array_equal(rows, finetuning.balanced_subset(labels, 0.1, seed=4))


def test_batch_and_learning_rate():
    assert finetuning.global_batch_size(4096, 12811, 8) == 4096
    assert finetuning.global_batch_size(4096, 130, 8) == 128  # whole rows per device
    assert finetuning.global_batch_size(32, 5, 8) == 8  # at least one row per device
    assert finetuning.learning_rate(settings(lr=0.05, lr_scaling="linear"), 4096) == 0.8
    assert finetuning.learning_rate(settings(lr=0.1, lr_scaling="none"), 4096) == 0.1
    assert registry.fraction_name(0.01) == "1pct" and registry.fraction_name(0.1) == "10pct"


class Flatten:
    """A stand-in method whose features are the flattened images (no batch statistics)."""

    def image_features(self, variables, images):
        return images.reshape(len(images), -1) @ variables["params"]["w"]

    def finetune_features(self, variables, images):
        return self.image_features(variables, images), variables["batch_stats"]


@pytest.mark.parametrize("mix", ["none", "mixup", "cutmix"])
def test_one_step_moves_the_head_down_the_mixed_gradient(mix):
    """From a zero head the softmax is uniform, so after one plain SGD step the head is
    ``-lr X^T (1/K - T) / N`` (float64 NumPy), T the targets mixed as the images are."""
    rng = np.random.RandomState(0)
    images = rng.rand(8, 4, 4, 1).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    variables = {"params": {"w": jnp.eye(16)}, "batch_stats": {}}
    batches = iter([(jnp.asarray(images), jnp.asarray(labels))])
    model, losses = finetuning.finetune(Flatten(), variables, batches, 3, steps=1, lr=0.5,
                                        momentum=0.0, nesterov=False, weight_decay=0.0,
                                        mix=mix, mix_alpha=1.0, seed=7)
    targets, x = np.eye(3)[labels], images.astype(np.float64)
    if mix != "none":  # the step's own draw: key(seed) folded with step 0
        mixer = mixing.mixup if mix == "mixup" else mixing.cutmix
        mixed, perm, lam = mixer(jax.random.fold_in(jax.random.key(7), 0), images, 1.0)
        assert 0.0 < float(lam) < 1.0  # a real mixture, else the check below proves little
        x = np.asarray(mixed, np.float64)
        targets = float(lam) * targets + (1 - float(lam)) * targets[np.asarray(perm)]
    residual = 1.0 / 3 - targets
    np.testing.assert_allclose(losses, [np.log(3.0)], rtol=1e-6)
    np.testing.assert_allclose(model.params["head"]["b"], -0.5 * residual.mean(0), atol=1e-6)
    np.testing.assert_allclose(model.params["head"]["w"],
                               -0.5 * x.reshape(8, -1).T @ residual / 8, atol=1e-6)
    # The caller's variables are copied, not donated to the step.
    np.testing.assert_array_equal(variables["params"]["w"], np.eye(16))


@pytest.fixture(scope="module")
def digits_run():
    """A BYOL network at its random initialisation on the digits, as the loop builds it."""
    exp = train.create_experiment(tiny_config("byol"))
    return exp, train.initial_state(exp)


def test_labelled_examples_are_the_same_on_host_and_on_device(digits_run):
    exp, state = digits_run
    host = train.EvalContext(exp, state).labelled_examples("train")
    exp.config.eval.features_on_device = True
    try:
        device = train.EvalContext(exp, state).labelled_examples("train")
    finally:
        exp.config.eval.features_on_device = False
    labels = np.asarray(exp.eval_train_split.read(np.arange(exp.eval_train_split.num_examples))
                        ["label"])
    for indices, found in (host, device):
        np.testing.assert_array_equal(indices, np.arange(len(labels)))
        np.testing.assert_array_equal(found, labels)


def test_finetuning_learns_the_digits_and_leaves_the_run_alone(digits_run):
    exp, state = digits_run
    before = jax.tree.map(np.asarray, (state.params, state.batch_stats))
    context = train.EvalContext(exp, state)
    results = registry.finetune(context, settings(fractions=(0.1,), epochs=(40.0,), lr=0.3))
    # 144 images (10% of each class), 180 steps of a tiny network from its random init make
    # 0.57; chance is 0.1, and labels out of step with their images would stay near it.
    assert set(results) == {"finetune_top1_10pct"} and results["finetune_top1_10pct"] > 0.4
    after = jax.tree.map(np.asarray, (state.params, state.batch_stats))
    jax.tree.map(np.testing.assert_array_equal, before, after)


def test_bad_settings_are_one_clear_error():
    with pytest.raises(ConfigError, match=r"evals.f.fractions \(\(0.01,\)\) needs one"):
        check_evals({"f": settings(fractions=(0.01,))})
    with pytest.raises(ConfigError, match="evals.f.mix is 'mixip'; use one of none, mixup"):
        check_evals({"f": settings(mix="mixip")})
    with pytest.raises(ConfigError, match="evals.f.lr_scaling is 'sqrt'"):
        check_evals({"f": settings(lr_scaling="sqrt")})


def test_presets_fine_tune_as_simclr():
    c = config_lib.load_config_file("simclr:imagenet")
    assert {k: c.evals.finetune[k] for k in config_lib.FINETUNE} == config_lib.FINETUNE
    assert config_lib.FINETUNE["batch_size"] * config_lib.FINETUNE["lr"] / 256 == 0.8
