"""Every method's digits preset, shrunk, through the real loop: data pipeline, two jitted
steps on 8 devices, checkpoint, and the final kNN / linear / few-label evaluation.

(BYOL and SimCLR run through the loop in test_train.py; the methods' state and losses are
checked step by step in the test_methods_* files.)
"""

import json
import math
import os

import pytest
from conftest import REPO, tiny_config

from cl_jax import train

METHODS = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "configs"))
                 if f.endswith(".py") and f[:-3] not in ("byol", "simclr"))


@pytest.mark.parametrize("method", METHODS)
def test_two_steps_and_evaluation_through_the_loop(method, tmp_path):
    config = tiny_config(method)
    config.eval.update(linear_steps=10, fewshot_draws=1)
    results = train.train_and_evaluate(config, str(tmp_path))
    assert all(0.0 <= results[k] <= 1.0 for k in ("knn_top1", "linear_top1", "fewshot_top1"))
    with open(tmp_path / "metrics.jsonl") as f:
        logged = [json.loads(line) for line in f if '"loss"' in line]
    assert [m["step"] for m in logged] == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in logged)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
