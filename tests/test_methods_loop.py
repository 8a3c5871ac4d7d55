"""Every method's digits preset, shrunk, through the real loop: data pipeline, two jitted
steps on 8 devices, checkpoint, and the final kNN evaluation (recomputed in NumPy on the features
of the checkpoint).

(BYOL and SimCLR run through the loop in test_train.py; the methods' state and losses are
checked step by step in the test_methods_* files.)
"""

import json
import math
import os

import pytest
from conftest import tiny_config
from test_train import assert_evaluates_the_checkpoint, recorded_features

from cl_jax import config_lib, train

# The image-text configs train on glyphs, through the loop in test_clip.py; the time-based
# ones (curl, tcn) on the moving digits.
EMBEDDED = ("digits", "moving_digits")
METHODS = [name for name in config_lib.config_names() if name not in ("byol", "simclr")
           and config_lib.load_config_module(name).PRESETS[0] in EMBEDDED]


@pytest.mark.parametrize("method", METHODS)
def test_two_steps_and_evaluation_through_the_loop(method, tmp_path, monkeypatch):
    config = tiny_config(method, config_lib.load_config_module(method).PRESETS[0])
    # kNN on each method's features; the probes, which take any features, are tested in
    # test_train.py, test_evaluation.py and test_moving_digits.py.
    config.evals.linear.type = config.evals.fewshot.type = "none"
    if "regression" in config.evals:
        config.evals.regression.type = "none"
    calls = recorded_features(monkeypatch)
    results = train.train_and_evaluate(config, str(tmp_path))
    assert set(results) == {"knn_top1"}
    assert_evaluates_the_checkpoint(calls, tmp_path, results, step=2)
    with open(tmp_path / "metrics.jsonl") as f:
        logged = [json.loads(line) for line in f if '"loss"' in line]
    assert [m["step"] for m in logged] == [1, 2]
    assert all(math.isfinite(m["loss"]) for m in logged)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "run_config.json"]
