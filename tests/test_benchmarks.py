"""The benchmarks run (tiny sizes), and the accelerator-side modules need no TensorFlow."""

import json
import subprocess
import sys

import numpy as np
import pytest
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


def run_benchmark(script, *args):
    code = (BLOCK_TENSORFLOW + f"import runpy; sys.argv = {[script, *args]!r}; "
            f"runpy.run_path({script!r}, run_name='__main__')")
    return run_python(code)


def ref_clip(img, txt, scale):
    a = img / np.linalg.norm(img, axis=1, keepdims=True)
    b = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    logits = scale * a @ b.T

    def lse(x, axis):
        m = x.max(axis)
        return m + np.log(np.exp(x - np.expand_dims(m, axis)).sum(axis))

    diag = np.diag(logits)
    return (np.mean(lse(logits, 1) - diag) + np.mean(lse(logits, 0) - diag)) / 2


def ref_siglip(img, txt, scale, bias):
    a = img / np.linalg.norm(img, axis=1, keepdims=True)
    b = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    signs = 2 * np.eye(len(a)) - 1
    return np.sum(np.logaddexp(0, -signs * (scale * a @ b.T + bias))) / len(a)


def test_loss_memory_clip_siglip_dense_blockwise_ring_on_forced_devices(tmp_path):
    out, n, dim, devices = tmp_path / "loss_memory.json", 256, 8, 4
    result = run_benchmark("benchmarks/loss_memory.py", "--losses=nt_xent,clip,siglip",
                           f"--sizes={n}", f"--dim={dim}", "--block-size=32",
                           f"--devices={devices}", "--repeats=1", "--warmup=0", f"--out={out}")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["device_count"] == report["devices"] == devices  # forced over conftest's 8
    nt, clip, siglip = report["results"]
    assert nt["loss_fn"] == "nt_xent" and nt["dense"]["loss"] > 0 and "ring" not in nt
    rng = np.random.RandomState(0)  # the script's data
    img, txt = (rng.normal(size=(n, dim)).astype(np.float32).astype(np.float64) for _ in range(2))
    for row, scalars, expected in ((clip, 1, ref_clip(img, txt, 1 / 0.07)),
                                   (siglip, 2, ref_siglip(img, txt, 10.0, -10.0))):
        for form in ("dense", "blockwise", "ring"):
            # memory_analysis is per device: the arguments are one device's shard and scalars
            assert row[form]["argument_bytes"] == 2 * n * dim * 4 // devices + 4 * scalars
            np.testing.assert_allclose(row[form]["loss"], expected, rtol=1e-5)
        # the ring holds n x n blocks, not a device's n x N rows of the logits
        assert row["ring"]["temp_bytes"] < n * n * 4 // devices < row["dense"]["temp_bytes"]
    assert "ring temp" in result.stdout


def test_text_tower_benchmark_tiny_without_tensorflow(tmp_path):
    out = tmp_path / "text_tower.json"
    result = run_benchmark("benchmarks/text_tower.py", "--tiny", f"--out={out}")
    assert result.returncode == 0, result.stderr
    (r,) = json.loads(out.read_text())["results"]
    width, vocab, length, out_dim, batch = 32, 64, 8, 16, 8
    assert (r["width"], r["vocab_size"], r["max_len"], r["batch"]) == (width, vocab, length, batch)
    # embeddings, one block (2 LayerNorms, qkv, proj, fc1, fc2), final LayerNorm, projection
    block = 4 * width + 3 * width * (width + 1) + width * (width + 1) + 2 * 4 * width**2 + 5 * width
    assert r["params"] == vocab * width + length * width + block + 2 * width + width * out_dim
    assert r["tokens_per_s"] == pytest.approx(batch * length * 1000 / r["step_ms"])
    # forward matrix products (per token: qkv, proj, fc1, fc2; attention; projection), and the
    # backward pass computes two products for each: at least 3x
    forward = (2 * batch * length * 12 * width**2 + 2 * 2 * batch * length**2 * width
               + 2 * batch * width * out_dim)
    assert r["flops_per_step"] >= 3 * forward
    assert "tokens/s" in result.stdout
