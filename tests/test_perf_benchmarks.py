"""The performance benchmarks run end to end at tiny sizes and write the JSON they promise.

benchmarks/compare_torch.py (cl_jax vs PyTorch) and benchmarks/pipeline.py (host tf.data
views/s), each in a subprocess. PyTorch is optional: without it compare_torch must say how
to install it, measure cl_jax alone and exit 0; the PyTorch half runs only where torch is
importable. No test looks at a time.
"""

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import REPO

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; "
TINY_COMPARE = ["--sizes=convnet@8:16", "--steps=1", "--rounds=1", "--warmup=1"]


def run_script(script, args, prelude=""):
    code = (f"{prelude}import runpy, sys; sys.argv = {[script, *args]!r}; "
            f"runpy.run_path({script!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def check_jax_rows(report, methods):
    assert [r["method"] for r in report["results"]] == methods
    for r in report["results"]:
        assert (r["model"], r["image_size"], r["batch"]) == ("convnet", 8, 16)
        j = r["jax"]
        assert r["images_per_s"] == j["images_per_s"] > 0
        assert j["params"] > 0 and j["timed_steps"] == 1
        assert j["mfu"] is None  # no peak FLOP/s is known for a CPU
        for key in ("step_ms", "compile_s", "flops_per_step", "tflops_per_s", "loss"):
            assert key in j


def test_compare_torch_without_torch_says_how_to_install(tmp_path):
    out = tmp_path / "compare.json"
    result = run_script("benchmarks/compare_torch.py",
                        [*TINY_COMPARE, "--methods=simclr", f"--json={out}"], prelude=BLOCK_TORCH)
    assert result.returncode == 0, result.stderr
    assert "pip install -e '.[bench]'" in result.stdout
    report = json.loads(out.read_text())
    assert report["torch"] is None and "[bench]" in report["torch_missing"]
    check_jax_rows(report, ["simclr"])
    assert all(r["torch"] is None for r in report["results"])


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch not installed (pip install -e '.[bench]')")
def test_compare_torch_mirrors_the_cl_jax_step(tmp_path):
    out = tmp_path / "compare.json"
    result = run_script("benchmarks/compare_torch.py", [*TINY_COMPARE, f"--json={out}"])
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["torch"] and report["torch_missing"] is None
    check_jax_rows(report, ["simclr", "byol"])
    for r in report["results"]:
        (t,) = r["torch"]
        assert t["precision"] == "fp32" and not t["compile"]
        # Same architecture and heads: exactly the same number of parameters.
        assert t["params"] == r["jax"]["params"]
        assert t["images_per_s"] > 0 and t["ratio"] > 0 and t["flops_per_step"] > 0
    assert "cl_jax / torch fp32" in result.stdout


def test_pipeline_benchmark_tiny(tmp_path):
    out = tmp_path / "pipeline.json"
    result = run_script("benchmarks/pipeline.py",
                        ["--tiny", "--methods=byol", "--colour=host", "--step_images_per_s=100",
                         f"--json={out}"])
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["cores"] >= 1
    rows = {(r["case"], r["method"], r["colour"], r["fused_crop"], r["policy"]): r
            for r in report["results"]}
    cases = [("memory", None), ("jpeg", True), ("jpeg", False)]
    # (The accelerator's colour ops: in test_step_options' loop run, not timed here.)
    plain = {(c, "byol", "host", f, "none") for c, f in cases}
    randaugment = {(c, "byol", "host", f, "randaugment") for c, f in cases[:2]}
    assert set(rows) == plain | randaugment
    assert {r["image_size"] for r in report["results"] if r["case"] == "memory"} == {32}
    for r in report["results"]:
        assert r["num_views"] == 2 and r["views_per_s"] > 0
        assert r["views_per_s"] == pytest.approx(2 * r["examples_per_s"])
        assert r["views_per_s_per_core"] == pytest.approx(r["views_per_s"] / report["cores"])
        feeds = r["feeds"]
        assert feeds["step_images_per_s"] == 100
        assert feeds["feeds_ratio"] == pytest.approx(r["examples_per_s"] / 100)
    assert "views/s" in result.stdout


@pytest.mark.parametrize("clip_lr", [False, True])
def test_torch_mirror_losses_and_lars_match_cl_jax(clip_lr):
    """compare_torch's NT-Xent, BYOL loss and LARS give cl_jax's numbers (float64)."""
    torch = pytest.importorskip("torch")
    import jax
    import numpy as np
    import optax

    from cl_jax import losses, optim

    sys.path.insert(0, str(REPO / "benchmarks"))
    import compare_torch as ct

    jax.config.update("jax_enable_x64", True)
    try:
        rng = np.random.RandomState(0)
        z1, z2 = rng.randn(6, 5), rng.randn(6, 5)
        t1, t2 = torch.from_numpy(z1), torch.from_numpy(z2)
        np.testing.assert_allclose(ct.nt_xent(t1, t2, 0.2).double().item(),
                                   losses.nt_xent(z1, z2, temperature=0.2), rtol=1e-6)
        np.testing.assert_allclose(ct.byol_loss(t1, t2).double().item(), losses.byol(z1, z2),
                                   rtol=1e-6)

        params = {"w": rng.randn(4, 3), "b": rng.randn(3)}
        grads = [{"w": rng.randn(4, 3), "b": rng.randn(3)} for _ in range(3)]
        lrs = [0.5, 0.02, 0.3]
        tx = optim.lars(lambda k: np.asarray(lrs)[k], weight_decay=0.1, momentum=0.9,
                        trust_coefficient=0.02, clip_lr=clip_lr)
        state, expected = tx.init(params), params
        tw = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        opt = ct.LARS(tw.values(), lr=0.0, weight_decay=0.1, momentum=0.9,
                      trust_coefficient=0.02, clip_lr=clip_lr)
        for lr, g in zip(lrs, grads, strict=True):
            updates, state = tx.update(g, state, expected)
            expected = optax.apply_updates(expected, updates)
            for k, p in tw.items():
                p.grad = torch.from_numpy(g[k])
            opt.param_groups[0]["lr"] = lr
            opt.step()
        for k, p in tw.items():
            np.testing.assert_allclose(p.detach().numpy(), expected[k], rtol=1e-9, atol=1e-12)
    finally:
        jax.config.update("jax_enable_x64", False)
