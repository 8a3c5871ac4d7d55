"""The real loop end to end: digits, TFDS mock data, image folders, resume, CLI errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import EVALS_OFF, REPO, tiny_config, write_image_folder
from sklearn.datasets import load_digits

import cl_jax
from cl_jax import embed, evaluate, train
from cl_jax.checkpoint import Checkpointer
from cl_jax.data import sources
from cl_jax.errors import ConfigError, DataError, UserError

EVAL_KEYS = {"knn_top1", "linear_top1", "fewshot_top1"}


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def reference_knn_top1(train_data, test_data, num_classes, k=200, temperature=0.07):
    """Weighted kNN top-1 (Wu et al. 2018) in float64: the ``k`` training features of largest
    cosine similarity ``s`` vote for their class with weight ``exp(s / temperature)``.
    Returns (accuracy, near ties): the fraction of test examples float32 may decide either
    way, those whose two largest class votes are within 1e-5 of each other (relative) or
    whose k-th and (k+1)-th neighbours' similarities are within 1e-6 (of other classes)."""
    (x, y), (xt, yt) = train_data, test_data
    x, y = unit(x[y >= 0]), y[y >= 0]
    similarity = unit(xt) @ x.T
    order = np.argsort(-similarity, axis=1, kind="stable")
    k = min(k, len(x))
    top = order[:, :k]
    boundary = np.zeros(len(xt), bool)
    if k < len(x):
        gap = np.take_along_axis(similarity, order[:, k - 1:k + 1], axis=1)
        boundary = (gap[:, 0] - gap[:, 1] < 1e-6) & (y[order[:, k - 1]] != y[order[:, k]])
    votes = np.zeros((len(xt), num_classes))
    np.add.at(votes, (np.arange(len(xt))[:, None], y[top]),
              np.exp(np.take_along_axis(similarity, top, axis=1) / temperature))
    second, first = np.sort(votes, axis=1)[:, -2:].T
    return np.mean(np.argmax(votes, axis=1) == yt), np.mean((first - second < 1e-5 * first)
                                                            | boundary)


def assert_knn_top1(value, train_data, test_data, num_classes, knn):
    """``value`` is the float64 kNN top-1, up to the test examples float32 may decide
    otherwise (near ties)."""
    expected, near_ties = reference_knn_top1(train_data, test_data, num_classes, knn.k,
                                             knn.temperature)
    assert abs(value - expected) <= near_ties + 1e-6, (value, expected, near_ties)


def features_of(exp, state):
    """(features, labels) of the evaluation's train and test splits under ``state``."""
    return [train.extract_features(exp, state, split)
            for split in (exp.eval_train_split, exp.eval_test_split)]


def recorded_features(monkeypatch):
    """Records ``(exp, state, split, (features, labels))`` of every ``train.extract_features``
    call of the loop (its evaluations')."""
    calls, original = [], train.extract_features

    def extract_and_record(exp, state, split, *args, **kwargs):
        out = original(exp, state, split, *args, **kwargs)
        # (features, labels), without the positions the evaluation context also asks for
        calls.append((exp, state, split, out[:2] if kwargs.get("positions") else out))
        return out

    monkeypatch.setattr(train, "extract_features", extract_and_record)
    return calls


def restore_checkpoint(template, workdir):
    """The latest checkpoint of ``workdir``, restored with the shardings of ``template``."""
    checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"), 0)
    state = checkpointer.restore_latest(template)
    checkpointer.close()
    return state


def assert_evaluates_the_checkpoint(calls, workdir, results, step):
    """The loop's last evaluation embedded the checkpoint at ``step`` (``recorded_features``
    ``calls``), and ``results['knn_top1']`` is the NumPy kNN on those features. Returns them:
    (features, labels) of the evaluation's train and test splits."""
    exp, evaluated = calls[-1][:2]
    last = {id(split): (state, out) for _, state, split, out in calls}
    (train_state, train_data), (test_state, test_data) = (
        last[id(split)] for split in (exp.eval_train_split, exp.eval_test_split))
    assert train_state is test_state is evaluated
    restored = restore_checkpoint(evaluated, workdir)
    assert int(restored.step) == int(evaluated.step) == step
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(evaluated.params),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    knn = exp.config.evals.knn
    assert_knn_top1(results["knn_top1"], train_data, test_data, exp.num_classes, knn)
    return train_data, test_data


@pytest.fixture(scope="module", params=["byol", "simclr"])
def two_step_run(request, tmp_path_factory):
    """Two real steps of a method through the loop on digits: (workdir, results, the
    loop's ``recorded_features``)."""
    workdir = tmp_path_factory.mktemp(request.param)
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = recorded_features(monkeypatch)
        config = tiny_config(request.param)
        config.eval_every_steps = 1  # a validation at step 1, the final evaluation at step 2
        results = train.train_and_evaluate(config, str(workdir))
    return workdir, results, calls


def test_two_steps_on_digits(two_step_run):
    workdir, results, calls = two_step_run
    assert EVAL_KEYS <= set(results)
    assert_evaluates_the_checkpoint(calls, workdir, results, step=2)
    with open(workdir / "eval.json") as f:
        assert json.load(f) == {"step": 2, **results}
    metrics = read_metrics(workdir)
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2]
    # During the run the probes fit on minitrain and score minival; test is scored once.
    assert [m["step"] for m in metrics if "val/knn_top1" in m] == [1]
    assert [m["step"] for m in metrics if "eval/knn_top1" in m] == [2]
    scored = {split.name: out for _, _, split, out in calls if "mini" in split.name}
    assert {name: len(out[1]) for name, out in scored.items()} == {
        "digits/minitrain": 1295, "digits/minival": 143}
    validation = next(m for m in metrics if "val/knn_top1" in m)
    knn = tiny_config("byol").evals.knn
    assert_knn_top1(validation["val/knn_top1"], scored["digits/minitrain"],
                    scored["digits/minival"], 10, knn)
    assert all(np.isfinite(m["loss"]) and "lr" in m for m in metrics if "loss" in m)
    assert (workdir / "config.json").exists()
    assert os.listdir(workdir / "tensorboard")
    assert "2" in os.listdir(workdir / "checkpoints")


def test_reevaluate_a_checkpoint(two_step_run):
    workdir, trained, _ = two_step_run
    assert evaluate.evaluate_workdir(str(workdir)) == trained


@pytest.mark.parametrize("two_step_run", ["byol"], indirect=True)  # one suffices
def test_load_encoder_gives_the_loops_features(two_step_run):
    workdir, _, calls = two_step_run
    exp, _, split, (features, _) = next(c for c in reversed(calls)
                                        if c[2] is c[0].eval_test_split)
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    images = images[sources.digits_masks()["test"]]
    encode = cl_jax.load_encoder(str(workdir))
    assert encode.step == 2 and encode.config.method.name == exp.config.method.name
    got = encode(images)
    assert got.shape == features.shape == (len(images), features.shape[1])
    np.testing.assert_allclose(got, features, rtol=1e-5, atol=1e-6)
    # Floats in [0, 1] are the same images; a batch that is not a multiple of the devices'.
    np.testing.assert_allclose(encode(images[:5] / 255.0), got[:5], rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match=r"shape \(N, H, W, 1\).*got \(4, 8, 8, 3\)"):
        encode(np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(UserError, match=r"shape \(N, H, W, 1\).*got \(8, 8, 1\)"):
        encode(images[0])
    with pytest.raises(UserError, match=r"in \[0, 1\].*Divide 0-255 values by 255"):
        encode(images.astype(np.float32))
    with pytest.raises(UserError, match="no checkpoint at step 7; it has 2"):
        cl_jax.load_encoder(str(workdir), step=7)


@pytest.mark.parametrize("two_step_run", ["byol"], indirect=True)  # one suffices
def test_embed_a_split_and_an_image_folder(two_step_run, tmp_path):
    workdir, _, calls = two_step_run
    features, labels = next(c[3] for c in reversed(calls) if c[2] is c[0].eval_test_split)
    written = embed.run(str(workdir), str(tmp_path / "test.npy"))
    assert written == [str(tmp_path / "test.npy"), str(tmp_path / "test.labels.npy")]
    np.testing.assert_allclose(np.load(tmp_path / "test.npy"), features, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.load(tmp_path / "test.labels.npy"), labels)

    paths = write_image_folder(tmp_path / "folder", per_class=3)  # 12 x 14 RGB, resized
    embed.run(str(workdir), str(tmp_path / "out" / "folder.npy"), images=str(tmp_path / "folder"))
    rows = (tmp_path / "out" / "folder.paths.txt").read_text().splitlines()
    assert sorted(rows) == sorted(map(str, paths))
    assert np.load(tmp_path / "out" / "folder.labels.npy").tolist() == [0, 0, 0, 1, 1, 1]
    # The same images decoded to the run's one channel, through load_encoder.
    images = np.stack([tf.io.decode_image(open(p, "rb").read(), channels=1).numpy()
                       for p in rows])
    np.testing.assert_allclose(np.load(tmp_path / "out" / "folder.npy"),
                               cl_jax.load_encoder(str(workdir))(images), rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError, match="no split 'val' to embed; it has train, test"):
        embed.run(str(workdir), str(tmp_path / "x.npy"), split="val")


def test_zero_steps_evaluates_the_initial_encoder(tmp_path):
    config = tiny_config("byol")
    config.total_steps = 0
    config.evals.linear.type = config.evals.fewshot.type = "none"  # kNN shows the point
    results = train.train_and_evaluate(config, str(tmp_path))
    with open(tmp_path / "eval.json") as f:
        assert json.load(f) == {"step": 0, **results}
    # A fresh experiment's freshly initialised encoder gives the same numbers.
    exp = train.create_experiment(config)
    initial = train.initial_state(exp)
    knn = config.evals.knn
    assert_knn_top1(results["knn_top1"], *features_of(exp, initial), exp.num_classes, knn)
    assert train.evaluate(exp, initial) == results


def test_tfds_mock_data(tmp_path, monkeypatch):
    calls = recorded_features(monkeypatch)
    with tfds.testing.mock_data(num_examples=40):
        config = tiny_config("simclr", "cifar10")
        for view in (config.augment.view1, config.augment.view2):
            view.size = 16
        config.eval.image_size = 16
        config.evals.linear.type = config.evals.fewshot.type = "none"  # kNN reads the splits
        results = train.train_and_evaluate(config, str(tmp_path))
        assert set(results) == {"knn_top1"}
        (_, labels), (features, _) = assert_evaluates_the_checkpoint(calls, tmp_path, results,
                                                                     step=2)
    assert len(labels) == 40 and features.shape == (40, 16)


def test_image_folder(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "train", per_class=12)
    write_image_folder(tmp_path / "test", per_class=4)
    config = tiny_config("byol", "folder")
    config.data.update(train_dir=str(tmp_path / "train"), eval_test_dir=str(tmp_path / "test"))
    for view in (config.augment.view1, config.augment.view2):
        view.size = 16
    config.eval.image_size = 16
    config.evals.fewshot.per_class = 2
    calls = recorded_features(monkeypatch)
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert EVAL_KEYS <= set(results)
    (_, train_labels), (_, test_labels) = assert_evaluates_the_checkpoint(
        calls, tmp_path / "run", results, step=2)
    # The classes are the sorted subfolders: cat 0, dog 1; kNN and probes train on train_dir.
    assert np.bincount(train_labels).tolist() == [12, 12]
    assert np.bincount(test_labels).tolist() == [4, 4]


def test_transfer_probes_on_another_data_set(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "train", per_class=10)
    write_image_folder(tmp_path / "test", per_class=4)
    transfer = {"train_split": f"folder:{tmp_path / 'train'}",
                "split": f"folder:{tmp_path / 'test'}", "prefix": "transfer_"}
    config = tiny_config("byol")  # on digits; probed on a folder of RGB images of two classes
    config.total_steps = 0
    config.data.extra_eval_splits = (transfer["train_split"], transfer["split"])
    knn = dict(config.evals.knn.to_dict(), k=5, **transfer)
    config.evals = ml_collections.ConfigDict(
        {"knn": knn, "linear": dict(config.evals.linear.to_dict(), **transfer)})
    calls = recorded_features(monkeypatch)
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert sorted(results) == ["transfer_knn_top1", "transfer_linear_top1"]
    scored = {split.name: out for _, _, split, out in calls}
    train_data, test_data = scored[str(tmp_path / "train")], scored[str(tmp_path / "test")]
    assert np.bincount(train_data[1]).tolist() == [10, 10]
    assert train_data[0].shape[1] == 16  # the digits encoder's features, of 1-channel images
    assert_knn_top1(results["transfer_knn_top1"], train_data, test_data, 2,
                    ml_collections.ConfigDict(knn))
    with pytest.raises(ConfigError, match="evals.linear.train_split is 'folder:/nowhere'"):
        config.evals.linear.train_split = "folder:/nowhere"
        train.validate(config)


def test_flat_unlabelled_folder_trains_without_probe(tmp_path):
    write_image_folder(tmp_path / "flat", per_class=8, flat=True)
    config = tiny_config("simclr", "folder")
    config.data.train_dir = str(tmp_path / "flat")
    for view in (config.augment.view1, config.augment.view2):
        view.size = 16
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert results == {}  # no test split to evaluate
    assert all("probe_acc" not in m for m in read_metrics(tmp_path / "run"))


def test_config_errors():
    config = tiny_config("simclr")
    config.method.name = "nope"
    with pytest.raises(ConfigError, match="Unknown method"):
        train.create_experiment(config)
    config = tiny_config("simclr", "folder")
    config.data.update(train_dir="/no/such/folder")
    with pytest.raises(DataError, match="does not exist"):
        train.create_experiment(config)
    config = tiny_config("simclr")  # the digits' splits, another source
    config.data.update(source="tfds", name="cifar10")
    with pytest.raises(ConfigError, match=r"data.train_split='minitrain' is a split of the "
                       r"embedded digits.*--config.data.train_split=train "
                       r"--config.data.val_split= --config.data.val_train_split="):
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
    extra = ["--config.data.name=cifar10", f"--config.data.data_dir={tmp_path}",
             "--config.data.train_split=train", "--config.data.val_split="] \
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
         "--config.checkpoint_every_steps=1000", "--config.evals.linear.steps=10",
         "--config.evals.fewshot.draws=1", "--config.evals.fewshot.steps=10"]


def test_sigterm_saves_and_the_resumed_run_matches_an_uninterrupted_one(tmp_path):
    total = 40
    args = [*SMALL, *EVALS_OFF, f"--config.total_steps={total}"]
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
    config.evals = ml_collections.ConfigDict()  # the losses are compared, not evaluations
    train.train_and_evaluate(config, str(tmp_path / "uninterrupted"))
    reference = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "uninterrupted")
                 if "loss" in m}
    interrupted = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "interrupted")
                   if "loss" in m}
    assert sorted(interrupted) == list(range(1, total + 1))
    for step in range(1, total + 1):
        assert interrupted[step] == reference[step], step
