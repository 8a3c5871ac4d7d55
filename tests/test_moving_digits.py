"""The moving digits (cl_jax.data.moving_digits): trajectories that bounce inside the canvas,
frames that hold the digit where the trajectory says, frame stacks and their targets, one
crop for every frame of a stack, the ridge probe against scikit-learn, and the errors."""

import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

from cl_jax import config_lib, data, train
from cl_jax.data import augment, moving_digits
from cl_jax.data.sources import DataError, digits_masks
from cl_jax.errors import ConfigError
from cl_jax.evaluation.linear import ridge_r2


def test_trajectories_bounce_inside_the_canvas_at_constant_speed():
    corners = moving_digits.trajectories(200, 30, canvas=20, speed=(1.0, 2.0), seed=0)
    assert corners.min() >= 0 and corners.max() <= 12
    now, after = corners[:, :-1], corners[:, 1:]
    speed = np.abs(after - now).max(axis=1, keepdims=True)  # reached by a step without a wall
    # Each step per axis travels the speed: straight, or to a wall (0 or 12) and back.
    travelled = np.stack([np.abs(after - now), now + after, 24 - now - after])
    assert np.isclose(travelled, speed).any(axis=0).all()
    assert (travelled[0] < speed - 1e-6).any()  # some steps do bounce
    norm = np.linalg.norm(speed[:, 0], axis=-1)
    assert norm.min() >= 1.0 and norm.max() <= 2.0
    again = moving_digits.trajectories(200, 30, canvas=20, speed=(1.0, 2.0), seed=0)
    np.testing.assert_array_equal(corners, again)


def test_frames_hold_the_digit_at_its_corner():
    frames, labels, corners = moving_digits.clips("test", canvas=20, clip_length=5)
    digits = load_digits()
    keep = digits_masks()["test"]
    images = np.round(digits.images[keep] * (255 / 16)).astype(np.uint8)
    assert frames.shape == (keep.sum(), 1, 5, 20, 20)
    np.testing.assert_array_equal(labels, digits.target[keep])
    for n in (0, 7, 100):
        for t in range(5):
            r, c = corners[n, t]
            np.testing.assert_array_equal(frames[n, 0, t, r:r + 8, c:c + 8], images[n])
            assert frames[n, 0, t].sum() == images[n].astype(int).sum()  # nothing elsewhere
    two, _, _ = moving_digits.clips("test", canvas=20, clip_length=5, cameras=2)
    np.testing.assert_array_equal(two[:, 1], np.swapaxes(frames[:, 0], 2, 3))


def test_stacks_are_consecutive_frames_with_their_targets():
    frames, labels, corners = moving_digits.clips("minival", clip_length=6)
    split = moving_digits.moving_digits_split("minival", clip_length=6, frame_stack=3)
    e = 4  # stacks per clip: frames 0-2, 1-3, 2-4, 3-5
    assert split.num_examples == len(frames) * e and split.channels == 3
    n, k = 5, 2  # clip 5, its stack ending at frame 4
    example = split.read(tf.constant(n * e + k))
    image = example["image"].numpy()
    for f in range(3):
        np.testing.assert_array_equal(image[..., f], frames[n, 0, k + f])
    assert int(example["label"]) == labels[n]
    np.testing.assert_allclose(split.targets["position"][n * e + k], corners[n, k + 2] / 12)
    np.testing.assert_allclose(split.targets["velocity"][n * e + k],
                               corners[n, k + 2] - corners[n, k + 1])


def test_one_crop_for_every_frame_of_a_stack():
    rng = np.random.RandomState(0)
    frame = rng.randint(0, 255, (20, 20, 1)).astype(np.uint8)
    stack = np.concatenate([frame, frame, frame], axis=-1)  # identical frames
    view = data.ViewAugment(size=16, crop_scale=(0.64, 0.64), crop_ratio=(1.0, 1.0),
                            flip_prob=0.5, jitter_prob=0.0, grayscale_prob=0.0)
    crops = set()
    for seed in range(8):
        out = augment.augment_view(tf.constant(stack), tf.constant([seed, 1], tf.int64),
                                view).numpy()
        assert out.shape == (16, 16, 3)
        np.testing.assert_array_equal(out[..., 0], out[..., 1])
        np.testing.assert_array_equal(out[..., 0], out[..., 2])
        crops.add(out.tobytes())
    assert len(crops) > 1  # the windows do move


def test_ridge_r2_matches_scikit_learn():
    rng = np.random.RandomState(0)
    x, xt = rng.randn(80, 6) * 3 + 1, rng.randn(40, 6) * 3 + 1
    w = rng.randn(6, 2)
    y, yt = x @ w + rng.randn(80, 2), xt @ w + rng.randn(40, 2)
    scaler = StandardScaler().fit(x)
    reference = Ridge(alpha=2.0).fit(scaler.transform(x), y)
    expected = r2_score(yt, reference.predict(scaler.transform(xt)))
    assert ridge_r2(x, y, xt, yt, alpha=2.0) == pytest.approx(expected, rel=1e-5)


def config(**data_overrides):
    c = config_lib.load_config_file(f"{config_lib.configs.__path__[0]}/curl.py")
    c.data.update(data_overrides)
    return c


@pytest.mark.parametrize("overrides, message", [
    (dict(channels=1), "set --config.data.channels=3"),
    (dict(frame_stack=2), "set --config.data.channels=2"),
])
def test_frame_stacks_that_do_not_fill_the_channels(overrides, message):
    with pytest.raises(ConfigError, match=message):
        train.validate(config(**overrides))


def test_colour_ops_are_refused_on_frames():
    c = config()
    c.augment.view2.grayscale_prob = 0.2
    with pytest.raises(ConfigError, match="channels are stacked frames"):
        train.validate(c)


def test_bad_clip_settings():
    with pytest.raises(DataError, match="frame_stack=9"):
        moving_digits.moving_digits_split("test", clip_length=8, frame_stack=9)
    with pytest.raises(DataError, match="smaller than a digit"):
        moving_digits.clips("test", canvas=6)
    with pytest.raises(DataError, match="not 'validation'"):
        moving_digits.clips("validation")


class StubContext:
    """What the regression evaluator reads: features and targets of two splits."""

    def __init__(self, rng):
        self.x = {"train": rng.randn(60, 5), "test": rng.randn(30, 5)}
        w = rng.randn(5, 2)
        self.y = {k: {"position": v @ w, "velocity": rng.randn(len(v), 2)}
                  for k, v in self.x.items()}

    def features(self, which):
        return self.x[which], np.zeros(len(self.x[which]), int)

    def targets(self, which):
        return self.y[which]


def test_regression_evaluator_scores_every_target_with_all_and_few_examples():
    from cl_jax.evaluation import registry

    ctx = StubContext(np.random.RandomState(0))
    settings = config_lib.ml_collections.ConfigDict(dict(alpha=1.0, few_examples=20, draws=3))
    got = registry.regression(ctx, settings)
    x, xt, y, yt = ctx.x["train"], ctx.x["test"], ctx.y["train"], ctx.y["test"]
    assert got["position_r2"] == pytest.approx(ridge_r2(x, y["position"], xt, yt["position"]))
    assert got["position_r2"] > 0.99 and got["velocity_r2"] < 0.2
    few = [ridge_r2(x[r], y["velocity"][r], xt, yt["velocity"]) for r in (
        np.random.RandomState(s).choice(60, 20, replace=False) for s in range(3))]
    assert got["fewshot_velocity_r2"] == pytest.approx(np.mean(few))
    assert got["fewshot_velocity_r2_std"] == pytest.approx(np.std(few))
    ctx.y["test"] = None  # a split without targets: nothing to score
    assert registry.regression(ctx, settings) == {}


# ---- Craftax-Classic frames (cl_jax.data.craftax_frames; the package is an optional extra) --


def fake_rollouts(num_envs, num_steps, seed):
    """Rollouts shaped as Craftax's: frame value = 10 * env + step (mod 250), resets after
    steps 4 and 9 of every environment."""
    step = np.arange(num_steps)
    value = (10 * np.arange(num_envs)[:, None] + step) % 250
    done = np.zeros((num_envs, num_steps), bool)
    done[:, [4, 9]] = True
    return {"frames": np.broadcast_to(value[..., None, None, None], (num_envs, num_steps, 4, 4,
                                                                     3)).astype(np.uint8),
            "done": done, "direction": 1 + step[None].repeat(num_envs, 0) % 4,
            "intrinsics": np.full((num_envs, num_steps, 4), 9), "light_level":
            np.ones((num_envs, num_steps)) * 0.5}


def test_craftax_stacks_stay_within_episodes_and_are_cached(tmp_path):
    from cl_jax.data import craftax_frames

    calls = []

    def generate(*args):
        calls.append(args)
        return fake_rollouts(*args)

    split = craftax_frames.craftax_split("train", str(tmp_path), num_envs=4, num_steps=12,
                                         frame_stack=3, generate=generate)
    again = craftax_frames.craftax_split("test", str(tmp_path), num_envs=4, num_steps=12,
                                         frame_stack=3, generate=generate)
    assert calls == [(4, 12, 0)]  # generated once, then read from the cache
    assert os.listdir(tmp_path / "craftax") == ["classic_random_4x12_seed0.npz"]
    # Episodes are steps 0-4, 5-9, 10-11: stacks end at 2, 3, 4, 7, 8, 9 (not 5, 6, 10, 11).
    per_env = 6
    assert split.num_examples == 3 * per_env and again.num_examples == per_env
    images = split.read(tf.range(split.num_examples))["image"].numpy()
    assert images.shape == (18, 4, 4, 9)
    ends = images[:per_env, 0, 0, 6]  # environment 0, the last frame's red
    np.testing.assert_array_equal(ends, [2, 3, 4, 7, 8, 9])
    np.testing.assert_array_equal(images[:per_env, 0, 0, 0], ends - 2)  # oldest frame first
    np.testing.assert_array_equal(again.read(tf.constant(0))["image"].numpy()[0, 0, ::3],
                                  [30, 31, 32])  # the test split: the last environment
    labels = split.read(tf.range(per_env))["label"].numpy()
    np.testing.assert_array_equal(labels, ends % 4)
    np.testing.assert_allclose(split.targets["intrinsics"], 1.0)
    assert split.targets["light_level"].shape == (18, 1)
    with pytest.raises(DataError, match="data_dir"):
        craftax_frames.craftax_split("train", "", generate=generate)


def test_craftax_texture_cache_goes_to_the_data_dir(tmp_path, monkeypatch):
    constants = pytest.importorskip("craftax.craftax_classic.constants")
    from cl_jax.data import craftax_frames

    monkeypatch.setattr(constants, "TEXTURE_CACHE_FILE", str(tmp_path / "absent.pbz2"))
    path = craftax_frames.point_texture_cache(str(tmp_path / "data"))
    assert path == str(tmp_path / "data" / "craftax" / "texture_cache_classic.pbz2")
    assert constants.TEXTURE_CACHE_FILE == path
