"""Multi-process and sharded-state training give the numbers of the single-process run.

``launch/local.sh`` starts real processes that meet through ``jax.distributed`` on
localhost (gloo collectives on CPU); the sharded (FSDP-style) state runs on the 8 forced
devices of the test process.
"""

import json
import os
import subprocess

import jax
import numpy as np
import pytest
from conftest import REPO, tiny_config
from jax.sharding import PartitionSpec as P

from cl_jax import data, parallel, train
from cl_jax.checkpoint import Checkpointer

TINY = ["--config.batch_size=16", "--config.model.widths=(8, 16)",
        "--config.method.proj_hidden_dims=(32,)", "--config.method.pred_hidden_dims=(32,)",
        "--config.method.proj_dim=16", "--config.total_steps=3", "--config.log_every_steps=1",
        "--config.eval.batch_size=64", "--config.evals.linear.steps=10",
        "--config.evals.fewshot.type=none", "--config.evals.collapse.type=none",
        "--config.evals.pictures.type=none", "--config.evals.finetune.type=none"]


def read_metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def launch(num_processes, local_devices, workdir, *overrides, config="configs/byol.py"):
    env = dict(os.environ, LOCAL_DEVICES=str(local_devices))
    env.pop("XLA_FLAGS", None)  # conftest's 8 forced devices are for this process only
    return subprocess.run(["bash", "launch/local.sh", str(num_processes), config,
                           str(workdir), *overrides],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=500)


def test_two_processes_of_two_devices_match_one_process_of_four(tmp_path):
    result = launch(2, 2, tmp_path / "2x2", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 4 device(s) in 2 processes" in result.stdout
    multi = read_metrics(tmp_path / "2x2")

    # The same global batches on one process with four devices, in this process.
    config = tiny_config("byol")
    config.total_steps = 3
    config.evals.linear.steps = 10
    config.evals.fewshot.type = "none"  # kNN and linear show that evaluation is multi-host
    mesh = parallel.create_mesh(jax.devices()[:4])
    single_eval = train.train_and_evaluate(config, str(tmp_path / "1x4"), mesh=mesh)
    single = read_metrics(tmp_path / "1x4")

    # Only process 0 writes: one line per step, no duplicates.
    assert [m["step"] for m in multi] == [m["step"] for m in single] == [1, 2, 3, 3]
    for a, b in zip(multi[:3], single[:3], strict=True):
        for key in ("loss", "grad_norm", "probe_loss"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, err_msg=f"{key} {a['step']}")
    with open(tmp_path / "2x2" / "eval.json") as f:
        multi_eval = json.load(f)
    # The features agree to float32 rounding (about 2e-7), not to the bit: a near tie at the
    # k-th neighbour (seen: two similarities 5e-8 apart) may flip one of the 359 predictions.
    np.testing.assert_allclose(multi_eval["knn_top1"], single_eval["knn_top1"],
                               atol=1 / 359 + 1e-6)
    np.testing.assert_allclose(multi_eval["linear_top1"], single_eval["linear_top1"],
                               atol=1 / 359 + 1e-6)
    assert (tmp_path / "2x2" / "config.json").exists()
    assert "3" in os.listdir(tmp_path / "2x2" / "checkpoints")


def test_launcher_fails_when_a_process_fails(tmp_path):
    result = launch(2, 1, tmp_path / "run", "--config.batch_size=15")
    assert result.returncode == 1
    assert "multiple of the number of devices (2 devices over 2 processes)" in result.stderr


def test_cluster_detection(monkeypatch):
    for name in parallel.SLURM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert parallel.cluster_detected() in (None, "tpu")
    for name in parallel.SLURM_VARIABLES:
        monkeypatch.setenv(name, "0")
    assert parallel.cluster_detected() == "slurm"


# --- sharded train state (FSDP-style) ------------------------------------------------------


def test_fsdp_spec_splits_the_largest_divisible_axis():
    assert parallel.fsdp_spec((3, 3, 16, 32), 8) == P(None, None, None, "data")
    assert parallel.fsdp_spec((64, 32), 8) == P("data", None)
    assert parallel.fsdp_spec((32, 32), 8) == P(None, "data")  # ties: the last axis
    assert parallel.fsdp_spec((10,), 8) == P()
    assert parallel.fsdp_spec((), 8) == P()
    assert parallel.fsdp_spec((4,), 8) == P()
    assert parallel.fsdp_spec((64, 32), 1) == P()


def digits_batches(config, num):
    split = data.load_split(config.data, "train")
    ds = data.train_dataset(split, data.view_augments(config.augment), seed=0,
                            global_batch=config.batch_size, mean=config.data.mean,
                            std=config.data.std)
    iterator = ds.as_numpy_iterator()
    return [next(iterator) for _ in range(num)]


@pytest.mark.parametrize("method", ["byol"])
def test_sharded_state_matches_replicated_state(method, tmp_path):
    assert jax.device_count() == 8
    config = tiny_config(method)
    host_batches = digits_batches(config, 2)
    results = {}
    for shard in (False, True):
        config.shard_state = shard
        exp = train.create_experiment(config)
        state = train.initial_state(exp)
        step = train.jit_train_step(exp)
        for host_batch in host_batches:
            state, metrics = step(state, parallel.to_global(host_batch, exp.mesh))
        results[shard] = (state, jax.device_get(metrics))

    sharded, _ = results[True]
    specs = [x.sharding.spec for x in jax.tree.leaves(sharded.params)]
    assert any("data" in spec for spec in specs)
    kernel = next(x for x in jax.tree.leaves(sharded.params) if x.ndim == 4)
    assert kernel.addressable_shards[0].data.size == kernel.size // 8
    for a, b in zip(jax.tree.leaves(jax.device_get(results[False])),
                    jax.tree.leaves(jax.device_get(results[True])), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # A checkpoint of the sharded state restores with its shardings.
    checkpointer = Checkpointer(str(tmp_path / "ckpt"), every_steps=1, asynchronous=False)
    checkpointer.save(2, sharded)
    restored = checkpointer.restore_latest(train.initial_state(exp))
    checkpointer.close()
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(restored), strict=True):
        assert a.sharding == b.sharding
        np.testing.assert_array_equal(jax.device_get(a), jax.device_get(b))
