"""The real loop end to end: digits, TFDS mock data, image folders, resume, CLI errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import REPO, tiny_config, write_image_folder

from cl_jax import evaluate, train
from cl_jax.errors import ConfigError, DataError

EVAL_KEYS = {"knn_top1", "linear_top1", "fewshot_top1"}


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module", params=["byol", "simclr"])
def two_step_run(request, tmp_path_factory):
    """Two real steps of a method through the loop on digits: (workdir, results)."""
    workdir = tmp_path_factory.mktemp(request.param)
    return workdir, train.train_and_evaluate(tiny_config(request.param), str(workdir))


def test_two_steps_on_digits(two_step_run):
    workdir, results = two_step_run
    assert EVAL_KEYS <= set(results)
    assert all(0.0 <= results[k] <= 1.0 for k in EVAL_KEYS)
    with open(workdir / "eval.json") as f:
        assert json.load(f)["step"] == 2
    metrics = read_metrics(workdir)
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2]
    assert all(np.isfinite(m["loss"]) and "lr" in m for m in metrics if "loss" in m)
    assert (workdir / "config.json").exists()
    assert os.listdir(workdir / "tensorboard")
    assert "2" in os.listdir(workdir / "checkpoints")


def test_reevaluate_a_checkpoint(two_step_run):
    workdir, trained = two_step_run
    again = evaluate.evaluate_workdir(str(workdir))
    assert again["knn_top1"] == trained["knn_top1"]


def test_zero_steps_evaluates_the_initial_encoder(tmp_path):
    config = tiny_config("byol")
    config.total_steps = 0
    results = train.train_and_evaluate(config, str(tmp_path))
    assert EVAL_KEYS <= set(results)


def test_tfds_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=40):
        config = tiny_config("simclr", "cifar10")
        for view in (config.augment.view1, config.augment.view2):
            view.size = 16
        config.eval.image_size = 16
        results = train.train_and_evaluate(config, str(tmp_path))
    assert EVAL_KEYS <= set(results)


def test_image_folder(tmp_path):
    write_image_folder(tmp_path / "train", per_class=12)
    write_image_folder(tmp_path / "test", per_class=4)
    config = tiny_config("byol", "folder")
    config.data.update(train_dir=str(tmp_path / "train"), eval_test_dir=str(tmp_path / "test"))
    for view in (config.augment.view1, config.augment.view2):
        view.size = 16
    config.eval.update(image_size=16, fewshot_per_class=2)
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert EVAL_KEYS <= set(results)


def test_flat_unlabelled_folder_trains_without_probe(tmp_path):
    write_image_folder(tmp_path / "flat", per_class=8, flat=True)
    config = tiny_config("simclr", "folder")
    config.data.train_dir = str(tmp_path / "flat")
    for view in (config.augment.view1, config.augment.view2):
        view.size = 16
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert results == {}
    assert all("probe_acc" not in m for m in read_metrics(tmp_path / "run"))


def test_config_errors():
    config = tiny_config("simclr")
    config.method.name = "nope"
    with pytest.raises(ConfigError, match="Unknown method"):
        train.create_experiment(config)
    config = tiny_config("simclr")
    config.data.update(source="folder", train_dir="/no/such/folder")
    with pytest.raises(DataError, match="does not exist"):
        train.create_experiment(config)


def cli(workdir, *overrides, config="configs/byol.py"):
    return [sys.executable, "-m", "cl_jax.main", f"--config={config}", f"--workdir={workdir}",
            *overrides]


def run_cli(*args, **kwargs):
    return subprocess.run(cli(*args, **kwargs), cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("override,message", [
    ("--config.optim.base_lrr=1", "has no field 'optim.base_lrr'.*Did you mean optim.base_lr"),
    ("--config.batch_size=100", "multiple of the number of devices"),
    ("--config.data.source=tfds", "tfds build"),
])
def test_cli_errors_are_one_clear_message(tmp_path, override, message):
    extra = ["--config.data.name=cifar10", f"--config.data.data_dir={tmp_path}"] \
        if "tfds" in override else []
    result = run_cli(tmp_path / "run", override, *extra)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert re.search(message, error_lines[0]), error_lines[0]


SMALL = ["--config.batch_size=16", "--config.model.widths=(8, 16)",
         "--config.method.proj_hidden_dims=(32,)", "--config.method.pred_hidden_dims=(32,)",
         "--config.method.proj_dim=16", "--config.log_every_steps=1",
         "--config.checkpoint_every_steps=1000", "--config.eval.linear_steps=10",
         "--config.eval.fewshot_draws=1"]


def test_sigterm_saves_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path):
    total = 40
    args = [*SMALL, f"--config.total_steps={total}"]
    proc = subprocess.Popen(cli(tmp_path / "interrupted", *args), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics_file = tmp_path / "interrupted" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics_file.exists() and len(metrics_file.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "SIGTERM received: saved a checkpoint" in out
    stopped_at = read_metrics(tmp_path / "interrupted")[-1]["step"]
    assert stopped_at < total, "the run finished before the signal; make it longer"

    resumed = run_cli(tmp_path / "interrupted", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {stopped_at}" in resumed.stdout

    config = tiny_config("byol")
    config.total_steps = total
    config.checkpoint_every_steps = 1000
    config.eval.update(linear_steps=10, fewshot_draws=1)
    train.train_and_evaluate(config, str(tmp_path / "uninterrupted"))
    reference = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "uninterrupted")
                 if "loss" in m}
    interrupted = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "interrupted")
                   if "loss" in m}
    assert sorted(interrupted) == list(range(1, total + 1))
    for step in range(1, total + 1):
        assert interrupted[step] == reference[step], step
