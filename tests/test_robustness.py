"""Never lose a run: NaN guard, SIGKILL resume, atomic checkpoints, config and data faults."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest
from conftest import EVALS_OFF, REPO, tiny_config, write_image_folder

from cl_jax import data, methods, parallel, resume, train
from cl_jax.checkpoint import Checkpointer
from cl_jax.data import pipeline, sources
from cl_jax.errors import ConfigError, DataError


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def losses(workdir):
    return {m["step"]: m["loss"] for m in read_metrics(workdir) if "loss" in m}


# --- non-finite guard ---------------------------------------------------------------------


def host_batch(config, seed=0):
    rng = np.random.RandomState(seed)
    views = tuple(rng.randn(config.batch_size, v.size, v.size, 1).astype(np.float32)
                  for v in data.view_augments(config.augment))
    return {"views": views, "label": rng.randint(0, 10, config.batch_size).astype(np.int32)}


def test_a_nonfinite_step_changes_nothing_but_the_counters():
    config = tiny_config("byol")
    exp = train.create_experiment(config)
    step = train.jit_train_step(exp)
    before = jax.device_get(train.initial_state(exp))
    poisoned = host_batch(config)
    poisoned["views"][0][3, 2, 2, 0] = np.nan
    state, metrics = step(jax.device_put(before), parallel.to_global(poisoned, exp.mesh))
    after = jax.device_get(state)
    assert not np.isfinite(metrics["loss"])
    assert int(after.step) == 1 and int(after.nonfinite_steps) == 1
    assert int(after.first_nonfinite_step) == 1
    for field in ("params", "batch_stats", "opt_state", "extra"):
        for a, b in zip(jax.tree.leaves(getattr(before, field)),
                        jax.tree.leaves(getattr(after, field)), strict=True):
            np.testing.assert_array_equal(a, b)
    # The next good batch trains; the first bad step stays recorded.
    state, metrics = step(state, parallel.to_global(host_batch(config, 1), exp.mesh))
    assert np.isfinite(metrics["loss"]) and int(metrics["nonfinite_steps"]) == 1
    assert int(state.first_nonfinite_step) == 1 and int(state.step) == 2


def test_an_infinite_learning_rate_never_reaches_the_parameters():
    config = tiny_config("simclr")
    config.optim.update(base_lr=math.inf, warmup_epochs=0.0)
    exp = train.create_experiment(config)
    step = train.jit_train_step(exp)
    before = jax.device_get(train.initial_state(exp))
    state, metrics = step(jax.device_put(before), parallel.to_global(host_batch(config),
                                                                     exp.mesh))
    assert np.isfinite(metrics["loss"])  # the loss was fine; the update was not
    assert int(state.nonfinite_steps) == 1
    for a, b in zip(jax.tree.leaves(before.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(a, jax.device_get(b))


def poison_step(monkeypatch, bad_step):
    """Makes the train loop's batch of step ``bad_step`` (1-based) contain a NaN."""
    original = data.prefetch_to_device

    def prefetch(batches, mesh, size=2):
        def poisoned():
            for batch in batches:
                if batches.step == bad_step:
                    first = batch["views"][0].copy()
                    first[0, 0, 0, 0] = np.nan
                    batch = dict(batch, views=(first, *batch["views"][1:]))
                yield batch
        return original(poisoned(), mesh, size)

    monkeypatch.setattr(data, "prefetch_to_device", prefetch)


def guarded_config(policy):
    config = tiny_config("byol")
    config.update(total_steps=6, checkpoint_every_steps=2, nonfinite=policy)
    config.evals.linear.steps = config.evals.fewshot.steps = 10
    config.evals.fewshot.draws = 1
    return config


def test_nonfinite_stop_names_the_step_and_keeps_the_last_good_checkpoint(
        monkeypatch, tmp_path):
    poison_step(monkeypatch, 3)
    config = guarded_config("stop")
    config.log_every_steps = 4  # the check also runs before every checkpoint
    with pytest.raises(train.NonFiniteError) as err:
        train.train_and_evaluate(config, str(tmp_path))
    message = str(err.value)
    assert "at step 3" in message and "last good checkpoint is step 2" in message
    assert "--config.nonfinite=skip" in message
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "run_config.json"]
    assert not (tmp_path / "eval.json").exists()


def test_nonfinite_skip_logs_and_trains_on(monkeypatch, tmp_path, capsys):
    poison_step(monkeypatch, 3)
    results = train.train_and_evaluate(guarded_config("skip"), str(tmp_path))
    assert results
    metrics = [m for m in read_metrics(tmp_path) if "loss" in m]
    assert [m["nonfinite_steps"] for m in metrics] == [0, 0, 1, 1, 1, 1]
    assert not np.isfinite(metrics[2]["loss"])
    assert all(np.isfinite(m["loss"]) for i, m in enumerate(metrics) if i != 2)
    assert "skipped 1 step(s) with a NaN or infinite loss or update so far (the first at " \
        "step 3)" in capsys.readouterr().out


# --- resume after SIGKILL, atomic checkpoints ---------------------------------------------

SMALL = ["--config.batch_size=16", "--config.model.widths=(8, 16)",
         "--config.method.proj_hidden_dims=(32,)", "--config.method.pred_hidden_dims=(32,)",
         "--config.method.proj_dim=16", "--config.log_every_steps=1",
         "--config.evals.linear.steps=10", "--config.evals.fewshot.draws=1",
         "--config.evals.fewshot.steps=10"]


def cli(workdir, *overrides):
    return [sys.executable, "-m", "cl_jax.main", "--config=configs/byol.py",
            f"--workdir={workdir}", *overrides]


def test_sigkill_then_restart_matches_an_uninterrupted_run(tmp_path):
    total, every = 100, 10
    args = [*SMALL, *EVALS_OFF, f"--config.total_steps={total}",
            f"--config.checkpoint_every_steps={every}"]
    workdir = tmp_path / "killed"
    proc = subprocess.Popen(cli(workdir, *args), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        steps = os.listdir(workdir / "checkpoints") if (workdir / "checkpoints").exists() else []
        if any(s.isdigit() for s in steps):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill; make it longer"
    logged = max(losses(workdir))
    assert logged < total

    resumed = subprocess.run(cli(workdir, *args), cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    restart = int(resumed.stdout.split("resuming at step ")[1].split()[0])
    assert 0 < restart <= logged and restart % every == 0

    config = tiny_config("byol")
    config.update(total_steps=total, checkpoint_every_steps=every)
    config.evals = ml_collections.ConfigDict()  # the losses are compared, not evaluations
    train.train_and_evaluate(config, str(tmp_path / "uninterrupted"))
    steps = [m["step"] for m in read_metrics(workdir) if "loss" in m]
    assert steps == list(range(1, total + 1))  # steps logged after the checkpoint: replaced
    assert losses(workdir) == losses(tmp_path / "uninterrupted")


SLOW_SAVE = """
import sys, time
import jax.numpy as jnp
import orbax.checkpoint as ocp
from cl_jax.checkpoint import Checkpointer

checkpointer = Checkpointer(sys.argv[1], every_steps=1, asynchronous=False)
checkpointer.save(1, {"w": jnp.full((4,), 1.0)})
write = ocp.StandardCheckpointHandler.async_save

def slow_write(self, *args, **kwargs):
    futures = write(self, *args, **kwargs)
    print("writing", flush=True)
    time.sleep(300)
    return futures

ocp.StandardCheckpointHandler.async_save = slow_write
checkpointer.save(2, {"w": jnp.full((4,), 2.0)})
"""


def test_a_kill_during_a_save_leaves_the_previous_checkpoint(tmp_path):
    directory = str(tmp_path / "checkpoints")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, directory], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait(timeout=60)
    assert any("tmp" in name for name in os.listdir(directory))  # the unfinished step 2

    checkpointer = Checkpointer(directory, every_steps=1)
    assert checkpointer.latest_step == 1
    restored = checkpointer.restore_latest({"w": np.zeros(4, np.float32)})
    np.testing.assert_array_equal(restored["w"], np.ones(4))
    checkpointer.close()
    assert sorted(os.listdir(directory)) == ["1"]  # the partial directory is cleaned up


def test_truncate_metrics_drops_steps_after_the_checkpoint_and_a_torn_line(tmp_path):
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in (1, 2, 3, 4)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 5, "lo')
    resume.truncate_metrics(str(tmp_path), 2)
    assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2]


# --- config validation --------------------------------------------------------------------


def test_config_errors_before_any_compilation(tmp_path, monkeypatch):
    config = tiny_config("byol")
    config.augment.num_local_views = 2
    with pytest.raises(ConfigError, match="does not use multi-crop"):
        train.create_experiment(config)
    config = tiny_config("byol")
    config.nonfinite = "ignore"
    with pytest.raises(ConfigError, match="nonfinite must be one of 'stop', 'skip'"):
        train.create_experiment(config)
    config = tiny_config("byol")
    config.data.bad_images = "drop"
    with pytest.raises(ConfigError, match="data.bad_images must be one of"):
        train.create_experiment(config)

    labelled = type("Labelled", (methods.METHODS["simclr"],), {"needs_labels": True})
    monkeypatch.setitem(methods.METHODS, "labelled", labelled)
    write_image_folder(tmp_path / "flat", per_class=4, flat=True)
    config = tiny_config("simclr", "folder")
    config.method.name = "labelled"
    config.data.train_dir = str(tmp_path / "flat")
    with pytest.raises(ConfigError, match="labelled needs labels, but .* has none; train on"):
        train.create_experiment(config)


# --- unreadable images --------------------------------------------------------------------


@pytest.fixture
def faulty_folder(tmp_path):
    root = tmp_path / "images"
    write_image_folder(root, per_class=6)
    (root / "cat" / "cat_2.jpg").write_bytes(b"not an image at all")
    truncated = root / "dog" / "dog_1.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    return root


VIEWS = [data.ViewAugment(size=8)] * 2
NORM = dict(mean=(0.5,) * 3, std=(0.5,) * 3)


def host_batches(split, start_step=0, policy="skip"):
    def dataset(step, bad=()):
        return pipeline.train_dataset(split, VIEWS, seed=0, global_batch=4, start_step=step,
                                      bad_indices=bad, **NORM)

    return pipeline.HostBatches(dataset(start_step), split, seed=0, global_batch=4,
                                start_step=start_step, bad_images=policy, rebuild=dataset)


def test_unreadable_images_are_skipped_and_counted(faulty_folder, caplog):
    split = sources.folder_split(str(faulty_folder))
    batches = host_batches(split)
    epoch = [next(batches) for _ in range(6)]  # 24 rows: two epochs of 12 images
    bad = {split.describe(i) for i in batches.bad_images.indices}
    assert {os.path.basename(p) for p in bad} == {"cat_2.jpg", "dog_1.png"}
    assert "Skipping unreadable image" in caplog.text and "dog_1.png" in caplog.text
    labels = np.concatenate([b["label"] for b in epoch])
    assert len(labels) == 24 and sorted(set(labels)) == [0, 1]
    # A run resumed at step 4 sees exactly the batches of the uninterrupted run.
    resumed = host_batches(split, start_step=4)
    for expected in epoch[4:]:
        got = next(resumed)
        np.testing.assert_array_equal(got["views"][0], expected["views"][0])
        np.testing.assert_array_equal(got["label"], expected["label"])

    evaluated = list(pipeline.eval_batches(split, bad_images="skip", size=8, crop_fraction=1.0,
                                           global_batch=8, **NORM))
    assert sum(b["mask"].sum() for b in evaluated) == 10


def test_unreadable_image_fails_fast_when_asked(faulty_folder):
    split = sources.folder_split(str(faulty_folder))
    batches = host_batches(split, policy="fail")
    with pytest.raises(DataError, match=r"(cat_2.jpg|dog_1.png).*bad_images=skip"):
        for _ in range(6):
            next(batches)
    with pytest.raises(DataError, match="cat_2.jpg"):
        list(pipeline.eval_batches(split, size=8, crop_fraction=1.0, global_batch=8, **NORM))


def test_a_folder_of_only_unreadable_images_is_a_clear_error(tmp_path):
    (tmp_path / "bad").mkdir()
    for i in range(3):
        (tmp_path / "bad" / f"{i}.png").write_bytes(b"junk")
    split = sources.folder_split(str(tmp_path / "bad"))
    with pytest.raises(DataError, match="None of the 3 images can be read"):
        next(host_batches(split))


# --- --list -------------------------------------------------------------------------------


def test_list_shows_methods_and_presets():
    result = subprocess.run([sys.executable, "-m", "cl_jax.main", "--list"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "byol" in lines[1] and "simclr" in lines[1]
    assert "  byol (method byol): digits, cifar10, cifar100, stl10, imagenet, folder" in lines
    assert any(line.startswith("  simclr (method simclr): digits") for line in lines)
