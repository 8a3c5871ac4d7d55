"""Augmentation seeds of streamed TFDS splits: one per record, never shared by processes."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cl_jax.data import ViewAugment, pipeline, sources

VIEWS = [ViewAugment(size=8, blur_prob=0.5)]  # crop, flip, jitter, grey, blur
NORM = dict(mean=(0.5,) * 3, std=(0.5,) * 3)
JOINED = "train[:50%]+train[50%:]"  # the same 24 rows, but without indices (no tfds_id)


class ClJaxSameTexture(tfds.core.GeneratorBasedBuilder):
    """24 copies of one random 16x16 texture: views differ only by their augmentation."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(num_classes=2)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        texture = np.random.RandomState(0).randint(0, 256, (16, 16, 3)).astype(np.uint8)
        for i in range(24):
            yield i, {"image": texture, "label": i % 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tfds"))
    tfds.builder("cl_jax_same_texture", data_dir=root).download_and_prepare()
    return root


def split_of(data_dir, which):
    return sources.tfds_split("cl_jax_same_texture", which, data_dir=data_dir)


def batches(split, process_index=0, process_count=1, start_step=0, steps=6):
    """Batches of 8 global rows from ``start_step`` to step 6 (3 steps an epoch)."""
    ds = pipeline.train_dataset(split, VIEWS, seed=3, global_batch=8, start_step=start_step,
                                process_index=process_index, process_count=process_count,
                                **NORM)
    iterator = ds.as_numpy_iterator()
    return [next(iterator) for _ in range(start_step, steps)]


@pytest.fixture(scope="module")
def runs(data_dir):
    """Two epochs of each of two processes, and of one process alone, per split."""
    found = {}
    for which in ("train", JOINED):
        split = split_of(data_dir, which)
        found[which] = [batches(split, p, 2) for p in range(2)]
    found["alone"] = batches(split_of(data_dir, "train"))
    return found


def assert_no_view_shared(parts):
    """No view of one process's batches equals any view of the other's (bit for bit)."""
    def views(got):
        return {v.tobytes() for b in got for v in b["views"][0]}

    assert len(views(parts[0])) == 6 * 4  # and none repeats within a process
    shared = views(parts[0]) & views(parts[1])
    assert not shared, f"{len(shared)} of 24 views drawn on both processes"


def test_processes_draw_different_views(data_dir, runs):
    split = split_of(data_dir, "train")
    assert not split.random_access and split.index_size == 24
    assert_no_view_shared(runs["train"])


def test_a_record_has_the_same_view_whichever_process_reads_it(runs):
    def by_record(got):  # (epoch, row) -> the record's view
        return {(step // 3, int(i)): b["views"][0][r]
                for step, b in enumerate(got) for r, i in enumerate(b["index"])}

    alone = by_record(runs["alone"])
    shared = {**by_record(runs["train"][0]), **by_record(runs["train"][1])}
    assert sorted(alone) == sorted(shared) == [(e, i) for e in range(2) for i in range(24)]
    for key, view in alone.items():
        np.testing.assert_array_equal(view, shared[key])
    assert not np.array_equal(alone[0, 5], alone[1, 5])  # a new draw every epoch


@pytest.mark.parametrize("which", ["train", JOINED])
def test_resumed_run_gets_the_same_batches(data_dir, runs, which):
    resumed = batches(split_of(data_dir, which), 1, 2, start_step=4)  # mid epoch 1
    for got, expected in zip(resumed, runs[which][1][4:], strict=True):
        np.testing.assert_array_equal(got["index"], expected["index"])
        np.testing.assert_array_equal(got["views"][0], expected["views"][0])


def test_records_without_indices_still_draw_different_views_per_process(data_dir, runs):
    assert split_of(data_dir, JOINED).index_size == 0
    assert np.all(runs[JOINED][0][0]["index"] == -1)
    assert_no_view_shared(runs[JOINED])
