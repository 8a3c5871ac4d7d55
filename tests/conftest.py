"""Test setup: eight forced CPU devices, so every test also exercises sharding."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests (and their subprocesses) compile the same tiny programs: share the compilations.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import chex  # noqa: E402  (imports jax; no backend starts before the next line)

chex.set_n_cpu_devices(8)  # through XLA_FLAGS, which the tests' subprocesses inherit too

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def write_image_folder(root, classes=("cat", "dog"), per_class=6, size=(12, 14), flat=False):
    """Writes small random PNG/JPEG images: root/<class>/<i>.png, or root/<i>.jpg if flat."""
    import tensorflow as tf

    rng = np.random.RandomState(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for c, name in enumerate(classes):
        folder = root if flat else root / name
        folder.mkdir(exist_ok=True)
        for i in range(per_class):
            pixels = rng.randint(0, 256, (*size, 3)).astype(np.uint8)
            pixels[..., c % 3] = 255  # classes differ in colour
            if i % 2:
                path, data = folder / f"{name}_{i}.png", tf.io.encode_png(pixels)
            else:
                path, data = folder / f"{name}_{i}.jpg", tf.io.encode_jpeg(pixels)
            path.write_bytes(data.numpy())
            paths.append(path)
    return paths


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "images"
    write_image_folder(root)
    return root


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


# Command-line flags that switch off the default evaluators, for runs whose point is not them.
EVALS_OFF = [f"--config.evals.{name}.type=none"
             for name in ("knn", "linear", "fewshot", "collapse", "pictures", "finetune")]


def tiny_config(method, preset="digits"):
    """A real config file's preset, shrunk so a train step compiles and runs in seconds."""
    from cl_jax import config_lib

    c = config_lib.load_config_file(f"{REPO}/configs/{method}.py:{preset}")
    c.batch_size = 16
    c.total_steps = 2
    c.log_every_steps = 1
    c.checkpoint_every_steps = 2
    c.model.encoder = "convnet"
    c.model.widths = (8, 16)
    for key in ("proj_hidden_dims", "pred_hidden_dims", "global_hidden_dims"):
        if key in c.method:
            c.method[key] = (32,)
    for key in ("proj_dim", "global_dim", "mi_units"):
        if key in c.method:
            c.method[key] = 16
    c.eval.batch_size = 64
    c.evals.linear.steps = c.evals.fewshot.steps = 20
    c.evals.fewshot.draws = 2
    for name in ("collapse", "pictures", "finetune"):  # seconds added to every run's
        if name in c.evals:  # evaluation; their own tests run them through the loop
            del c.evals[name]
    return c


def random_batch(config, batch_size=16, seed=0, num_classes=10):
    """A host batch of random views shaped as ``config`` asks (multi-crop included), random
    labels and distinct example indices below ``config.method.num_examples``."""
    from cl_jax import data

    rng = np.random.RandomState(seed)
    views = tuple(
        rng.randn(batch_size, v.size, v.size, config.data.channels).astype(np.float32)
        for v in data.view_augments(config.augment))
    labels = rng.randint(0, num_classes, batch_size).astype(np.int32)
    rows = config.method.get("num_examples", 0) or 10 * batch_size
    index = np.random.RandomState(1000 + seed).choice(rows, batch_size, replace=False)
    return {"views": views, "label": labels, "index": index.astype(np.int32)}


def train_steps(method, num_steps=2, preset="digits", config=None, **overrides):
    """``num_steps`` real jitted train steps on all (8 forced) devices, random batches.

    Returns (experiment, [state_0, ..., state_n], [metrics_1, ..., metrics_n]); the states
    are fetched to the host, so donation does not invalidate them.
    """
    import jax

    from cl_jax import parallel, train

    c = config if config is not None else tiny_config(method, preset)
    c.update(overrides)
    exp = train.create_experiment(c)
    state = train.initial_state(exp)
    step = train.jit_train_step(exp)  # the loop's own (so the compilation cache is shared)
    states, metrics = [jax.device_get(state)], []
    for i in range(num_steps):
        batch = parallel.to_global(random_batch(c, c.batch_size, seed=i), exp.mesh)
        state, m = step(state, batch)
        states.append(jax.device_get(state))
        metrics.append(jax.device_get(m))
    return exp, states, metrics


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the float64 reference ``f`` at ``x``."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        grad[idx] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad
