"""RandAugment / AutoAugment views (augment.randaugment_*, augment.autoaugment) in the real
pipeline and loop."""

import json

import numpy as np
import pytest
from conftest import tiny_config

from cl_jax import data, train
from cl_jax.data import sources
from cl_jax.errors import ConfigError


def first_batch(augment):
    split = sources.digits_split("minitrain")
    stream = data.train_dataset(split, data.view_augments(augment), seed=3, global_batch=16,
                                mean=(0.3,), std=(0.4,))
    return next(stream.as_numpy_iterator())["views"]


@pytest.mark.parametrize("policy", [dict(randaugment_num_ops=2, randaugment_magnitude=9),
                                    dict(autoaugment="imagenet")])
def test_policy_views_are_deterministic_and_change_the_views(policy):
    config = tiny_config("byol")
    plain = first_batch(config.augment)
    config.augment.update(policy)
    views, again = first_batch(config.augment), first_batch(config.augment)
    for a, b, p in zip(views, again, plain, strict=True):
        np.testing.assert_array_equal(a, b)  # a function of (seed, epoch, index)
        assert a.shape == p.shape == (16, 8, 8, 1)
        changed = np.any(a != p, axis=(1, 2, 3))
        assert changed.mean() > 0.5  # most views have an op that changes them


def test_randaugment_trains_through_the_loop(tmp_path):
    config = tiny_config("byol")
    config.augment.update(randaugment_num_ops=2, randaugment_magnitude=15,
                          randaugment_ops="big_vision")
    config.evals = {"knn": config.evals.knn}
    results = train.train_and_evaluate(config, str(tmp_path))
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["augment"]["randaugment_num_ops"] == 2
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "metrics.jsonl")
              if '"loss"' in line]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    assert 0 < results["knn_top1"] <= 1


@pytest.mark.parametrize("override,message", [
    (dict(autoaugment="cifar"), "augment.autoaugment is 'cifar'"),
    (dict(randaugment_ops="timm"), "augment.randaugment_ops is 'timm'"),
    (dict(randaugment_num_ops=2, randaugment_magnitude=31), r"magnitude must lie in \[0, 30\]"),
    (dict(randaugment_num_ops=1, autoaugment="imagenet"), "not both"),
])
def test_bad_policy_settings_are_config_errors(override, message):
    config = tiny_config("byol")
    config.augment.update(override)
    with pytest.raises(ConfigError, match=message):
        train.validate(config)
