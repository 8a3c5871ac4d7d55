"""A restart resumes the same run: a changed trajectory field is an error, the logs written
after the restored checkpoint are superseded (metrics.jsonl and TensorBoard)."""

import collections
import glob
import json
import shutil

import pytest
import tensorflow as tf
from conftest import tiny_config

from cl_jax import resume, train
from cl_jax.errors import ConfigError


def tensorboard_scalars(workdir):
    """[(tag, step, value)] of every scalar event in the run's TensorBoard files."""
    found = []
    for path in sorted(glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                found.append((value.tag, event.step,
                              float(tf.make_ndarray(value.tensor))))
    return found


def test_changed_fields_and_which_are_safe():
    saved = {"batch_size": 16, "total_steps": 4, "optim": {"base_lr": 0.3},
             "evals": {"knn": {"k": 200}}, "model": {"widths": [8, 16]}}
    config = {"batch_size": 32, "total_steps": 8, "optim": {"base_lr": 0.3},
              "evals": {"knn": {"k": 20}}, "model": {"widths": (8, 16)}}
    changed = resume.changed_fields(saved, config)
    assert changed == ["batch_size", "evals.knn.k", "total_steps"]
    assert [f for f in changed if not resume.is_safe(f)] == ["batch_size"]


def test_fields_added_since_the_run_pass_at_their_defaults(tmp_path):
    config = json.loads(tiny_config("byol").to_json())
    saved = json.loads(json.dumps(config))
    del saved["model"]["norm"], saved["data"]["color_space"]  # a run from before they existed
    resume.check_config_change(saved, config, str(tmp_path))
    config["model"]["norm"] = "layer"
    with pytest.raises(ConfigError, match=r"model.norm: '\(absent\)' -> 'layer'"):
        resume.check_config_change(saved, config, str(tmp_path))


def test_restart_refuses_another_config_and_supersedes_the_logs(tmp_path):
    config = tiny_config("byol")
    config.update(total_steps=4, checkpoint_every_steps=2, log_every_steps=1)
    train.train_and_evaluate(config, str(tmp_path))
    first = {(tag, step): value for tag, step, value in tensorboard_scalars(tmp_path)}
    shutil.rmtree(tmp_path / "checkpoints" / "4")  # as if killed after step 4's logging

    changed = tiny_config("byol")
    changed.update(total_steps=4, checkpoint_every_steps=2, log_every_steps=1, batch_size=32)
    with pytest.raises(ConfigError, match=r"batch_size: 16 -> 32.*allow_config_change=True"):
        train.train_and_evaluate(changed, str(tmp_path))

    config.eval_every_steps = 1000  # a cadence: safe to change on resume
    train.train_and_evaluate(config, str(tmp_path))
    scalars = tensorboard_scalars(tmp_path)
    counts = collections.Counter((tag, step) for tag, step, _ in scalars)
    assert max(counts.values()) == 1  # steps 3 and 4 logged once, by the resumed run
    assert {step for _, step, _ in scalars} == {1, 2, 3, 4}
    resumed = {(tag, step): value for tag, step, value in scalars}
    for step in (3, 4):  # and a resumed run continues exactly
        assert resumed[("loss", step)] == first[("loss", step)]
    with open(tmp_path / "metrics.jsonl") as f:
        steps = [json.loads(line)["step"] for line in f if '"loss"' in line]
    assert steps == [1, 2, 3, 4]
