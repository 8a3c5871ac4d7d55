"""The ``pictures`` evaluator: a 2-D map, a nearest-neighbour sheet and projector files."""

import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

from cl_jax import config_lib, train
from cl_jax.errors import ConfigError
from cl_jax.evaluation import check_evals, pictures


def test_nearest_neighbours_leave_the_query_out():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.4], [-1.0, 0.0]])
    # cosines to row 0: 1, 0.994, 0, 0.832, -1; to row 2: 0, 0.110, 1, 0.555, 0.
    np.testing.assert_array_equal(pictures.nearest_neighbours(x, np.array([0, 2]), 2),
                                  [[1, 3], [3, 1]])


def test_the_map_keeps_clusters_apart():
    rng = np.random.RandomState(0)
    centres = np.eye(3, 16) * 5
    labels = np.repeat(np.arange(3), 20)
    features = centres[labels] + 0.1 * rng.randn(60, 16)
    coords, made_by = pictures.embedding_map(features, "tsne")
    assert made_by == "t-SNE" and coords.shape == (60, 2) and np.isfinite(coords).all()
    # Each point's nearest point on the map is of its own cluster.
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1) + np.diag(np.full(60, np.inf))
    assert (labels[d.argmin(1)] == labels).all()


def test_the_sprite_places_images_row_by_row():
    images = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 2, 2, 1), np.uint8)
    grid = pictures.sprite(images, 2)
    assert grid.shape == (6, 6, 3)  # ceil(sqrt(5)) = 3 cells a side, grey to RGB
    assert grid[0, 2, 0] == 1 and grid[2, 0, 0] == 3 and grid[2, 2, 0] == 4
    assert (grid[4:, :, :] == 0).all()  # the empty cells


def test_bad_map_is_one_clear_error():
    settings = config_lib.base_config().evals.pictures
    settings.map = "pca"
    with pytest.raises(ConfigError, match="evals.p.map is 'pca'; use one of auto, tsne, umap"):
        check_evals({"p": settings})


def not_blank(path):
    image = tf.io.decode_png(open(path, "rb").read()).numpy()
    return image.shape[0] > 100 and len(np.unique(image.reshape(-1, image.shape[-1]),
                                                   axis=0)) > 10


@pytest.mark.parametrize("on_device", [False, True])
def test_pictures_at_the_end_of_a_run(tmp_path, on_device):
    config = tiny_config("byol")
    config.total_steps = 0
    config.eval.features_on_device = on_device  # the features stay split over the devices
    config.evals = ml_collections.ConfigDict(
        {"pictures": config_lib.base_config().evals.pictures.to_dict()})
    config.evals.pictures.update(queries=3, neighbours=4)
    assert train.train_and_evaluate(config, str(tmp_path)) == {}
    plots = tmp_path / "plots"
    # Features gathered from the devices do not say which image each row is: no sheet.
    assert sorted(os.listdir(plots)) == ["embedding_step0.png"] + (
        [] if on_device else ["neighbours_step0.png"])
    assert all(not_blank(plots / name) for name in os.listdir(plots))
    board = tmp_path / "tensorboard"
    assert len((board / "embeddings.tsv").read_text().splitlines()) == 359  # digits test
    labels = (board / "metadata.tsv").read_text().split()
    assert len(labels) == 359 and set(labels) == set(map(str, range(10)))
    if on_device:
        assert "sprite" not in (board / "projector_config.pbtxt").read_text()
        return
    assert 'image_path: "sprite.png"' in (board / "projector_config.pbtxt").read_text()
    assert tf.io.decode_png((board / "sprite.png").read_bytes()).shape == (19 * 32, 19 * 32, 3)
    tags = {value.tag for name in os.listdir(board) if "tfevents" in name
            for event in tf.compat.v1.train.summary_iterator(str(board / name))
            for value in event.summary.value}
    assert {"pictures/embedding", "pictures/neighbours"} <= tags


@pytest.mark.parametrize("channels,expected", [(1, (4, 4)), (3, (4, 4, 3)), (8, (4, 4)),
                                               (9, (4, 4, 3))])
def test_a_frame_stack_shows_its_last_frame(channels, expected):
    plt = pictures.figure()
    fig, ax = plt.subplots()
    image = np.arange(16 * channels, dtype=np.uint8).reshape(4, 4, channels)
    pictures.show(ax, image)
    shown = np.asarray(ax.images[0].get_array())
    assert shown.shape == expected
    last = image[..., -3:] if len(expected) == 3 else image[..., -1]
    np.testing.assert_array_equal(shown, last)
    plt.close(fig)


def test_the_sprite_of_frame_stacks_holds_their_last_frames():
    stacks = np.arange(2 * 4 * 8, dtype=np.uint8).reshape(2, 2, 2, 8)  # 8 greyscale frames
    grid = pictures.sprite(stacks, 2)
    assert grid.shape == (4, 4, 3)
    np.testing.assert_array_equal(grid[:2, :2, 0], stacks[0, ..., -1])
    np.testing.assert_array_equal(grid[:2, 2:, 1], stacks[1, ..., -1])
