"""Time-Contrastive Networks (Sermanet et al. 2018): the triplet masks of single- and
multi-view TCN, the masked triplet loss against float64 NumPy, the method's loss from the
network's embeddings, the frame order and the representation, and the errors. (The loop runs
TCN on 8 devices in test_methods_loop.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch, tiny_config
from test_methods_clustering import compiled_loss

from cl_jax import losses, train
from cl_jax.errors import ConfigError
from cl_jax.methods.tcn import frames_of, triplet_masks


def test_single_and_multi_view_masks():
    pos, neg = map(np.asarray, triplet_masks(1, 5, pos_window=1, neg_gap=3))
    assert np.flatnonzero(pos[2]).tolist() == [1, 3]
    assert np.flatnonzero(neg[2]).tolist() == [] and np.flatnonzero(neg[0]).tolist() == [3, 4]
    pos, neg = map(np.asarray, triplet_masks(2, 4, pos_window=1, neg_gap=2))
    # frames: camera 0 times 0-3, then camera 1 times 0-3
    assert np.flatnonzero(pos[1]).tolist() == [5] and np.flatnonzero(pos[5]).tolist() == [1]
    assert np.flatnonzero(neg[1]).tolist() == [7] and np.flatnonzero(neg[4]).tolist() == [2, 3]


def distances(x):
    return np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0))


def masked_triplet_numpy(x, pos, neg, margin, mining):
    """Loops over anchors and positives (float64)."""
    d = distances(x)
    terms = []
    for a in range(len(x)):
        negatives = np.flatnonzero(neg[a])
        positives = [p for p in np.flatnonzero(pos[a]) if p != a]
        if mining == "hard":
            if positives and len(negatives):
                terms.append(max(d[a, positives].max() - d[a, negatives].min() + margin, 0))
            continue
        for p in positives:
            if not len(negatives):
                continue
            if mining == "all":
                terms += [max(d[a, p] - d[a, n] + margin, 0) for n in negatives]
                continue
            farther = [n for n in negatives if d[a, n] > d[a, p]]
            d_an = d[a, farther].min() if farther else d[a, negatives].max()
            terms.append(max(d[a, p] - d_an + margin, 0))
    return np.mean(terms) if terms else 0.0


@pytest.mark.parametrize("mining", ["semihard", "hard", "all"])
def test_masked_triplet_loss_matches_numpy(mining):
    rng = np.random.RandomState(0)
    x = rng.randn(10, 3)
    pos, neg = rng.rand(10, 10) < 0.3, rng.rand(10, 10) < 0.4
    got = losses.triplet_margin(jnp.asarray(x, jnp.float32), margin=0.5, mining=mining,
                                positives=pos, negatives=neg)
    assert float(got) == pytest.approx(masked_triplet_numpy(x, pos, neg, 0.5, mining),
                                       rel=1e-5)
    labels = rng.randint(0, 3, 10)
    from_labels = losses.triplet_margin(jnp.asarray(x, jnp.float32), jnp.asarray(labels),
                                        margin=0.5, mining=mining)
    same = labels[:, None] == labels[None]
    from_masks = losses.triplet_margin(jnp.asarray(x, jnp.float32), margin=0.5,
                                       mining=mining, positives=same, negatives=~same)
    assert float(from_masks) == pytest.approx(float(from_labels), rel=1e-6)


def test_frames_are_camera_major_then_time():
    x = jnp.arange(2 * 4).reshape(1, 1, 1, 8) * jnp.ones((2, 3, 3, 1))
    frames, steps = frames_of(x, cameras=2)
    assert steps == 4 and frames.shape == (16, 3, 3, 1)
    np.testing.assert_array_equal(frames[:8, 0, 0, 0], np.arange(8))
    np.testing.assert_array_equal(frames[8:, 0, 0, 0], np.arange(8))


@pytest.mark.parametrize("preset", ["moving_digits", "moving_digits_multiview"])
def test_loss_matches_numpy_on_the_network_embeddings(preset):
    config = tiny_config("tcn", preset)
    config.batch_size = 8
    exp = train.create_experiment(config)
    state = jax.device_get(train.initial_state(exp))
    c = config.method
    batch = random_batch(config, 8)
    assert batch["views"][0].shape[-1] == 8 * c.cameras
    (loss, _), _ = compiled_loss(exp.method, state, batch)(state.extra, 0)
    out = exp.method.network.apply({"params": state.params, "batch_stats": state.batch_stats},
                                   jnp.asarray(batch["views"][0]), train=True,
                                   mutable=["batch_stats"])[0]
    emb = np.asarray(out["embeddings"], np.float64)  # (clips, cameras, T, D)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, rtol=1e-5)
    pos, neg = map(np.asarray, triplet_masks(c.cameras, 8, c.pos_window, c.neg_gap))
    expected = np.mean([masked_triplet_numpy(e.reshape(-1, e.shape[-1]), pos, neg, c.margin,
                                             c.mining) for e in emb])
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # The representation: every frame's encoder features, concatenated in frame order.
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    features = exp.method.image_features(variables, jnp.asarray(batch["views"][0]))
    frame = jnp.asarray(batch["views"][0][..., 3:4])
    alone = exp.method.network.apply(variables, frame, method=lambda net, f: net.encoder(
        f, False))
    width = alone.shape[-1]
    assert features.shape == (8, 8 * c.cameras * width)
    np.testing.assert_allclose(features[:, 3 * width:4 * width], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overrides, message", [
    (dict(cameras=3), "do not divide into them"),
    (dict(pos_window=3, neg_gap=3), "pos_window"),
    (dict(mining="easy"), "method.mining"),
])
def test_config_errors(overrides, message):
    config = tiny_config("tcn", "moving_digits")
    config.method.update(overrides)
    with pytest.raises(ConfigError, match=message):
        train.validate(config)
