"""The host pipeline: deterministic order, resume, per-process shards, sources, errors."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import write_image_folder

from cl_jax import config_lib
from cl_jax.data import ViewAugment, eval_dataset, pipeline, sources
from cl_jax.errors import DataError

VIEWS = [ViewAugment(size=8, flip_prob=0.0, blur_prob=0.5), ViewAugment(size=8)]
NORM = dict(mean=(0.3,), std=(0.4,))


def batches(split, n, views=VIEWS, **kwargs):
    kwargs = {"seed": 0, "global_batch": 32, "start_step": 0, **NORM, **kwargs}
    iterator = pipeline.train_dataset(split, views, **kwargs).as_numpy_iterator()
    return [next(iterator) for _ in range(n)]


@pytest.fixture(scope="module")
def digits():
    return sources.digits_split("train")


def test_digits_splits_are_disjoint_and_stratified():
    train, test = sources.digits_split("train"), sources.digits_split("test")
    assert train.num_examples + test.num_examples == 1797
    assert 0.19 < test.num_examples / 1797 < 0.21
    read = lambda s: np.stack([s.read(i)["image"].numpy() for i in range(s.num_examples)])
    train_images, test_images = read(train), read(test)
    assert train_images.shape[1:] == (8, 8, 1) and train_images.dtype == np.uint8
    train_set = {im.tobytes() for im in train_images}
    overlap = sum(im.tobytes() in train_set for im in test_images)
    assert overlap < 10  # sklearn's digits has a few exact duplicates; no systematic overlap


def test_minival_is_a_stratified_tenth_of_train_and_the_normalisation_its_complement():
    from sklearn.datasets import load_digits

    masks = sources.digits_masks()
    labels = load_digits().target
    np.testing.assert_array_equal(masks["minitrain"] | masks["minival"], masks["train"])
    assert not np.any(masks["minitrain"] & masks["minival"]) and not np.any(
        masks["minival"] & masks["test"])
    train_counts = np.bincount(labels[masks["train"]])
    np.testing.assert_array_equal(np.bincount(labels[masks["minival"]]),
                                  np.round(0.1 * train_counts))
    # The splits as the data loader reads them, and the config's normalisation from the
    # pixels of the split the presets train on.
    minitrain = sources.digits_split("minitrain")
    assert (minitrain.num_examples, sources.digits_split("minival").num_examples) == (1295, 143)
    pixels = minitrain.read(np.arange(minitrain.num_examples))["image"].numpy() / 255.0
    assert abs(pixels.mean() - config_lib.DIGITS_MEAN[0]) < 5e-5
    assert abs(pixels.std() - config_lib.DIGITS_STD[0]) < 5e-5
    byol = config_lib.load_config_file("byol")
    assert (byol.data.train_split, byol.data.val_split, byol.data.eval_test_split) == (
        "minitrain", "minival", "test")


def test_batches_are_deterministic_and_well_formed(digits):
    first, again = batches(digits, 2), batches(digits, 2)
    for a, b in zip(first, again, strict=True):
        for va, vb in zip(a["views"], b["views"], strict=True):
            np.testing.assert_array_equal(va, vb)
    views = first[0]["views"]
    assert len(views) == 2 and views[0].shape == (32, 8, 8, 1) and views[0].dtype == np.float32
    assert not np.array_equal(views[0], views[1])  # two different augmentations
    other_seed = batches(digits, 1, seed=1)[0]
    assert not np.array_equal(other_seed["label"], first[0]["label"])


def test_each_epoch_visits_every_example_once():
    split = sources.in_memory_split("toy", np.zeros((10, 4, 4, 1), np.uint8), np.arange(10), 10)
    got = batches(split, 6, views=[ViewAugment(size=4)], global_batch=5)
    labels = np.concatenate([b["label"] for b in got])
    for epoch in range(3):
        assert sorted(labels[10 * epoch:10 * (epoch + 1)]) == list(range(10))
    assert not np.array_equal(labels[:10], labels[10:20])  # a new permutation every epoch
    # Each row carries its example's index (here equal to the label): memory banks key on it.
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in got]), labels)


def test_colour_off_leaves_crops_and_flips_unnormalised(digits):
    no_colour = [ViewAugment(size=8, jitter_prob=0.0, grayscale_prob=0.0)] * 2
    host = batches(digits, 1, views=no_colour)[0]
    device = batches(digits, 1, views=no_colour, colour=False)[0]
    for h, d in zip(host["views"], device["views"], strict=True):
        assert d.min() >= 0.0 and d.max() <= 1.0
        np.testing.assert_allclose(h, (d - 0.3) / 0.4, atol=1e-6)  # the same crops
    np.testing.assert_array_equal(host["label"], device["label"])


def test_resume_gives_the_same_batches(digits):
    uninterrupted = batches(digits, 5)
    resumed = batches(digits, 2, start_step=3)
    for a, b in zip(uninterrupted[3:], resumed, strict=True):
        np.testing.assert_array_equal(a["label"], b["label"])
        np.testing.assert_array_equal(a["views"][1], b["views"][1])


def test_processes_read_disjoint_rows_of_the_same_global_batch(digits):
    whole = batches(digits, 2)[1]
    parts = [batches(digits, 2, process_index=p, process_count=2)[1] for p in range(2)]
    assert parts[0]["views"][0].shape[0] == 16
    np.testing.assert_array_equal(np.concatenate([p["views"][0] for p in parts]),
                                  whole["views"][0])


def test_eval_dataset_covers_split_once_with_padding():
    split = sources.in_memory_split("toy", np.zeros((11, 4, 4, 1), np.uint8), np.arange(11), 11)
    for process_count in (1, 2):
        seen = []
        for p in range(process_count):
            ds, num_batches = eval_dataset(split, size=4, crop_fraction=1.0, **NORM,
                                           global_batch=4, process_index=p,
                                           process_count=process_count)
            got = list(ds.as_numpy_iterator())
            assert len(got) == num_batches == 3
            seen += [int(y) for b in got for y, m in zip(b["label"], b["mask"], strict=True) if m]
        assert sorted(seen) == list(range(11))


def test_image_folder_with_classes(image_folder):
    split = sources.folder_split(str(image_folder))
    assert split.num_examples == 12 and split.num_classes == 2
    labels = [int(split.read(i)["label"]) for i in range(12)]
    assert labels == [0] * 6 + [1] * 6
    kwargs = dict(views=[ViewAugment(size=8)] * 2, global_batch=12, mean=(0.5,) * 3,
                  std=(0.5,) * 3)
    got = batches(split, 1, fused_crop=True, **kwargs)[0]
    assert got["views"][0].shape == (12, 8, 8, 3)
    # JPEGs decoded only inside each crop window: the views of whole decoding (up to the
    # chroma upsampling at a window's edge); PNGs are decoded whole either way.
    whole = batches(split, 1, **kwargs)[0]
    for fused, decoded in zip(got["views"], whole["views"], strict=True):
        assert np.abs(fused - decoded).mean() < 0.02
    np.testing.assert_array_equal(got["label"], whole["label"])


def test_flat_image_folder_is_unlabelled(tmp_path):
    write_image_folder(tmp_path / "flat", flat=True)
    split = sources.folder_split(str(tmp_path / "flat"))
    assert split.num_examples == 12 and split.num_classes == 0
    assert int(split.read(0)["label"]) == -1


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        sources.folder_split(str(tmp_path / "nowhere"))
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="No images"):
        sources.folder_split(str(tmp_path / "empty"))


def test_undecodable_image_is_named(image_folder):
    bad = image_folder / "dog" / "dog_3.png"
    bad.write_bytes(b"this is not a png")
    split = sources.folder_split(str(image_folder))
    views = [ViewAugment(size=8)] * 2
    kwargs = dict(seed=0, global_batch=12, start_step=0, mean=(0.5,) * 3, std=(0.5,) * 3)
    host = pipeline.HostBatches(pipeline.train_dataset(split, views, **kwargs), split,
                                seed=0, global_batch=12, start_step=0)
    with pytest.raises(DataError, match="dog_3.png"):
        next(host)


@pytest.mark.parametrize("in_memory", [True, False])
def test_tfds_source_on_mock_data(in_memory):
    with tfds.testing.mock_data(num_examples=24):
        split = sources.tfds_split("cifar10", "train", in_memory=in_memory)
        assert split.num_examples == 24 and split.num_classes == 10
        assert split.random_access == in_memory
        views = [ViewAugment(size=16)] * 2
        kwargs = dict(global_batch=8, mean=(0.5,) * 3, std=(0.5,) * 3)
        first = batches(split, 4, views=views, **kwargs)
        assert first[0]["views"][0].shape == (8, 16, 16, 3)
        index = np.concatenate([b["index"] for b in first[:3]])  # 24 rows: one epoch
        assert sorted(index) == list(range(24)) if in_memory else np.all(index == -1)
        resumed = batches(split, 1, views=views, start_step=3, **kwargs)[0]
        np.testing.assert_array_equal(resumed["views"][0], first[3]["views"][0])
        ds, num_batches = eval_dataset(split, size=16, crop_fraction=1.0, global_batch=8,
                                       mean=(0.5,) * 3, std=(0.5,) * 3)
        assert sum(b["mask"].sum() for b in ds.as_numpy_iterator()) == 24


class ClJaxTinyImages(tfds.core.GeneratorBasedBuilder):
    """24 solid 8x8 images (example i has pixel value 10 i), prepared on disk as TFDS does."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(num_classes=2)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(24):
            yield i, {"image": np.full((8, 8, 3), 10 * i, np.uint8), "label": i % 2}


def test_streamed_tfds_records_carry_their_row_in_the_split(tmp_path):
    """Memory banks on streamed TFDS: every record keeps one index, from its tfds_id."""
    tfds.builder("cl_jax_tiny_images", data_dir=str(tmp_path)).download_and_prepare()
    split = sources.tfds_split("cl_jax_tiny_images", "train", data_dir=str(tmp_path))
    assert not split.random_access and split.index_size == 24
    views = [ViewAugment(size=8, crop_scale=(1, 1), flip_prob=0.0, jitter_prob=0.0,
                         grayscale_prob=0.0)]
    got = batches(split, 6, views=views, global_batch=8, mean=(0.0,) * 3, std=(1.0,) * 3)
    index = np.concatenate([b["index"] for b in got])
    pixel = np.concatenate([b["views"][0][:, 0, 0, 0] for b in got])
    for epoch in range(2):  # a permutation of all rows every epoch, in a new order
        assert sorted(index[24 * epoch:24 * (epoch + 1)]) == list(range(24))
    assert not np.array_equal(index[:24], index[24:])
    image_of = {}
    for i, p in zip(index, pixel, strict=True):  # an index always names the same image
        assert image_of.setdefault(i, p) == p
    assert len(set(image_of.values())) == 24
    half = sources.tfds_split("cl_jax_tiny_images", "train[:50%]", data_dir=str(tmp_path))
    assert half.num_examples == 12 and half.index_size == 24  # rows of the whole split


def test_tfds_missing_data_set_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="tfds build cifar10"):
        sources.tfds_split("cifar10", "train", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="no data set named"):
        sources.tfds_split("no_such_dataset_xyz", "train")
