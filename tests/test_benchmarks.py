"""The benchmarks run (tiny sizes), and the accelerator-side modules need no TensorFlow."""

import json
import subprocess
import sys

from conftest import REPO

BLOCK_TENSORFLOW = (
    "import sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None; "
)


def run_python(code, *args):
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_losses_models_methods_import_without_tensorflow():
    result = run_python(BLOCK_TENSORFLOW + "import cl_jax.losses, cl_jax.models, cl_jax.methods, "
                        "cl_jax.state, cl_jax.optim, cl_jax.parallel, cl_jax.evaluation, "
                        "cl_jax.config_lib, cl_jax.device_augment, cl_jax.views")
    assert result.returncode == 0, result.stderr


def test_train_step_benchmark_tiny_without_tensorflow(tmp_path):
    out = tmp_path / "train_step.json"
    code = (BLOCK_TENSORFLOW + "import runpy; sys.argv = ['train_step.py', '--tiny', "
            f"'--out={out}']; runpy.run_path('benchmarks/train_step.py', run_name='__main__')")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert {r["method"] for r in report["results"]} == {"simclr", "byol"}
    assert all(r["images_per_s"] > 0 for r in report["results"])
    assert "images/s" in result.stdout
