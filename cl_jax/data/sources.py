"""Data sources: the embedded digits, TFDS data sets, image folders.

Each source yields a ``Split``. Most splits are *random access*: ``read(index)`` maps an
int64 index to ``{'image': uint8 [h, w, c], 'label': int32}`` inside tf.data, so the
pipeline can draw any epoch permutation and any process's share without reading the rest
(digits, TFDS loaded into memory, image folders). Large TFDS data sets are *streamed*:
``stream(process_index, process_count)`` gives this process's records in a fixed order and
``decode`` turns a record into the same dict; decoding happens after shuffling and skipping.

Splits of image files (folders, streamed TFDS) also give the encoded bytes,
``read_encoded(index)`` / ``decode_encoded(record)`` -> ``{'encoded': string, 'label'}``, so
training can decode only each view's crop window of a JPEG (``augment.decode_random_crop``).
"""

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from cl_jax.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass
class Split:
    name: str
    num_examples: int
    num_classes: int  # 0 when the split has no labels (label is then -1)
    read: Callable | None = None  # random access: int64 index -> example dict
    stream: Callable | None = None  # streaming: (process index, count, drop_remainder) -> records
    decode: Callable | None = None  # streaming: record -> example dict
    describe: Callable[[int], str] = str  # index -> a name for error messages (a file path)
    channels: int = 3  # of the decoded images
    read_encoded: Callable | None = None  # random access: index -> {'encoded', 'label'}
    decode_encoded: Callable | None = None  # streaming: record -> {'encoded', 'label'}
    # Example indices (memory banks key on them) lie in [0, index_size); 0: the examples have
    # none. A random-access split's are its read indices; a streamed TFDS split's are the
    # records' rows in the whole prepared split (``decode`` adds them as 'index').
    index_size: int = 0
    # Image-text splits: each example's caption (its read gives 'tokens' once a tokenizer has
    # encoded them, see ``with_tokens``), and the class names and prompt templates of
    # zero-shot classification ('{}' stands for a class name).
    captions: tuple | None = None
    class_names: tuple = ()
    templates: tuple = ()
    # What a generated data set was made from (the glyphs' fonts and their hash), JSON-able;
    # the run writes it to workdir/data.json.
    provenance: dict | None = None
    # Text splits (``cl_jax.data.text``): K columns of N sentences each (an example is one
    # sentence of every column: a sentence, a pair, or anchor / positive / hard negative),
    # and for a graded-similarity (STS) split each pair's gold score.
    texts: tuple | None = None
    scores: np.ndarray | None = None
    # Per-example regression targets, name -> (N, d) float array (the moving digits'
    # position and velocity, scored by the evaluator type "regression").
    targets: dict | None = None

    def __post_init__(self):
        if self.random_access and not self.index_size:
            self.index_size = self.num_examples

    @property
    def random_access(self):
        return self.read is not None


def in_memory_split(name, images, labels, num_classes):
    """A random-access split over uint8 images (N, H, W, C) and int labels held in memory."""
    images = tf.constant(np.asarray(images, np.uint8))
    labels = tf.constant(np.asarray(labels, np.int32))

    def read(index):
        return {"image": tf.gather(images, index), "label": tf.gather(labels, index)}

    return Split(name, int(images.shape[0]), num_classes, read=read,
                 channels=int(images.shape[-1]))


def subset_split(split, indices):
    """The examples ``indices`` of a random-access split as a split of their own: its example
    ``i`` is ``split``'s example ``indices[i]``."""
    if not split.random_access:
        raise ValueError(f"{split.name} is streamed; only a random-access split has subsets")
    table = tf.constant(np.asarray(indices, np.int64))
    read, describe = split.read, split.describe
    return dataclasses.replace(
        split, name=f"{split.name} (a subset)", num_examples=len(indices),
        index_size=len(indices), read=lambda i: read(tf.gather(table, i)), read_encoded=None,
        describe=lambda i: describe(int(indices[i])))


def with_tokens(split, tokens, counts=None):
    """``split`` whose examples also carry ``tokens``, row ``index`` of the int32 table: (N, L),
    one caption per example, or (N, C, L) with ``counts`` (N,) captions per example (the
    pipeline then picks one per example and epoch, see ``make_views``)."""
    table = tf.constant(np.asarray(tokens, np.int32))
    count_table = None if counts is None else tf.constant(np.asarray(counts, np.int32))
    read = split.read

    def read_with_tokens(index):
        example = dict(read(index), tokens=tf.gather(table, index))
        if count_table is not None:
            example["num_captions"] = tf.gather(count_table, index)
        return example

    return dataclasses.replace(split, read=read_with_tokens)


# --- the embedded default: scikit-learn's handwritten digits ------------------------------


DIGITS_SPLITS = ("train", "test", "minitrain", "minival")


def _stratified(labels, fraction, rng):
    """A mask of ``fraction`` of every class of ``labels``, drawn with ``rng``."""
    chosen = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        chosen[members[: round(fraction * len(members))]] = True
    return chosen


def digits_masks(holdout_fraction=0.2, minival_fraction=0.1):
    """Masks of the digits splits over scikit-learn's 1797 images, the same on every machine.

    'test' is a stratified ``holdout_fraction`` of every class (seed 0); 'train' the rest;
    'minival' a stratified ``minival_fraction`` of every class of 'train' (seed 1) and
    'minitrain' the rest of 'train'. The presets pre-train on 'minitrain', score 'minival'
    during training and for any tuning, and score 'test' once, at the end.
    """
    labels = load_digits().target
    test = _stratified(labels, holdout_fraction, np.random.RandomState(0))
    train = np.flatnonzero(~test)
    minival = np.zeros(len(labels), bool)
    minival[train[_stratified(labels[train], minival_fraction, np.random.RandomState(1))]] = True
    return {"train": ~test, "test": test, "minival": minival, "minitrain": ~test & ~minival}


def digits_split(split):
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes) as uint8 (N, 8, 8, 1);
    ``split`` one of ``DIGITS_SPLITS`` (see ``digits_masks``)."""
    if split not in DIGITS_SPLITS:
        raise DataError(f"The digits data set has splits {', '.join(DIGITS_SPLITS)}, not "
                        f"{split!r}.")
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    keep = digits_masks()[split]
    return in_memory_split(f"digits/{split}", images[keep], digits.target[keep].astype(np.int32),
                           num_classes=10)


# --- the embedded image-text set: Unicode glyphs and their names -------------------------


def glyph_split(split, size=32, fonts=(), seed=0, code_points=()):
    """A split of the glyph set (``cl_jax.data.glyphs``): 'train', 'eval_font' (a held-out
    font) or 'eval_novel' (held-out code points); labels are the glyphs' scripts.
    ``code_points``: only these (a small set for tests)."""
    from cl_jax.data import glyphs

    if split not in glyphs.SPLITS:
        raise DataError(f"The glyph data set has splits {', '.join(glyphs.SPLITS)}, not "
                        f"{split!r}.")
    options = {"fonts": tuple(fonts)} if fonts else {}
    if code_points:
        options["code_points"] = tuple(code_points)
    dataset = glyphs.load(seed=seed, size=size, **options)
    part = dataset[split]
    base = in_memory_split(f"glyphs/{split}", part.images, part.script,
                           num_classes=len(dataset.script_names))
    return dataclasses.replace(base, captions=tuple(part.captions),
                               class_names=tuple(dataset.script_names),
                               templates=tuple(glyphs.zero_shot_templates()),
                               provenance=glyphs.describe(dataset))


# --- TFDS ---------------------------------------------------------------------------------


def _tfds_builder(name, data_dir):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"TFDS has no data set named {name!r}; check --config.data.name "
                        "(see https://www.tensorflow.org/datasets/catalog).") from None


def _not_prepared(name, split, data_dir, err):
    where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    return DataError(
        f"TFDS data set {name!r} (split {split!r}) is not prepared under {where}. Prepare it "
        f"once on a machine with network access: `tfds build {name} --data_dir={where}` "
        f"(ImageNet needs its archives downloaded by hand first, see the TFDS catalog), or "
        f"point --config.data.data_dir at the folder that holds it. ({err})")


def _tfds_record_index(builder, split):
    """``(tfds_id -> int32 row of the record in its whole split, number of rows)``, or None
    when the split's shard lengths are unknown (mock data) or it joins splits ('a+b').

    A ``tfds_id`` is ``<name>-<split>.<format>-<shard>-of-<count>__<record in shard>``.
    """
    if "+" in split:
        return None
    try:
        lengths = [int(n) for n in builder.info.splits[split.split("[")[0]].shard_lengths]
    except (KeyError, ValueError):
        return None
    if not lengths:
        return None
    offsets = tf.constant(np.cumsum([0] + lengths[:-1]), tf.int64)

    def index(tfds_id):
        number = lambda pattern: tf.strings.to_number(
            tf.strings.regex_replace(tfds_id, pattern, r"\1"), tf.int64)
        shard, record = number(r"^.*-(\d+)-of-\d+__\d+$"), number(r"^.*__(\d+)$")
        return tf.cast(tf.gather(offsets, shard) + record, tf.int32)

    return index, sum(lengths)


def _decode_image(record_image, channels):
    return tf.io.decode_image(record_image, channels=channels, expand_animations=False)


def tfds_split(name, split, data_dir=None, in_memory=False, channels=3):
    """A TFDS image classification split (features ``image`` and, if present, ``label``).

    ``in_memory=True`` decodes the whole split into memory once (CIFAR, small data sets) and
    gives a random-access split. Otherwise the split is streamed: each process reads
    ``tfds.split_for_jax_process(split)`` with images left encoded until after shuffling.
    """
    builder = _tfds_builder(name, data_dir)
    features = builder.info.features
    num_classes = features["label"].num_classes if "label" in features else 0
    record_index = None if in_memory else _tfds_record_index(builder, split)
    read_config = tfds.ReadConfig(add_tfds_id=True) if record_index else None

    def as_dataset(which):
        try:
            return builder.as_dataset(split=which, shuffle_files=False, read_config=read_config,
                                      decoders={"image": tfds.decode.SkipDecoding()})
        except (AssertionError, FileNotFoundError, ValueError) as err:
            raise _not_prepared(name, split, data_dir, err) from None

    def decode_encoded(record):
        label = tf.cast(record["label"], tf.int32) if num_classes else tf.constant(-1, tf.int32)
        example = {"encoded": record["image"], "label": label}
        if record_index:
            example["index"] = record_index[0](record["tfds_id"])
        return example

    def decode(record):
        example = decode_encoded(record)
        example["image"] = _decode_image(example.pop("encoded"), channels)
        return example

    if in_memory:
        ds = as_dataset(split).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        examples = [ex for ex in ds.as_numpy_iterator()]
        if not examples:
            raise DataError(f"TFDS split {name}/{split} is empty.")
        images = np.stack([ex["image"] for ex in examples])
        labels = np.array([ex["label"] for ex in examples], np.int32)
        return in_memory_split(f"{name}/{split}", images, labels, num_classes)

    num_examples = int(as_dataset(split).cardinality())
    if num_examples <= 0:
        raise DataError(f"TFDS split {name}/{split} is empty or of unknown size.")

    def stream(process_index, process_count, drop_remainder):
        shard = tfds.split_for_jax_process(split, process_index=process_index,
                                           process_count=process_count,
                                           drop_remainder=drop_remainder)
        return as_dataset(shard)

    return Split(f"{name}/{split}", num_examples, num_classes, stream=stream, decode=decode,
                 channels=channels, decode_encoded=decode_encoded,
                 index_size=record_index[1] if record_index else 0)


# --- image folders ------------------------------------------------------------------------


def _image_files(directory):
    found = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def folder_split(directory, channels=3):
    """JPEG/PNG files under ``directory``: one subfolder per class, or a flat unlabelled folder.

    With class subfolders, labels are the subfolders' indices in sorted order (as
    torchvision's ImageFolder). Files directly in ``directory`` make it unlabelled.
    """
    if not directory or not os.path.isdir(directory):
        raise DataError(f"Image folder {directory!r} does not exist; set --config.data.train_dir "
                        "(and eval_train_dir / eval_test_dir) to folders of JPEG/PNG images.")
    classes = sorted(e.name for e in os.scandir(directory) if e.is_dir())
    flat = [os.path.join(directory, f) for f in sorted(os.listdir(directory))
            if f.lower().endswith(IMAGE_EXTENSIONS)]
    if classes and not flat:
        paths, labels = [], []
        for label, cls in enumerate(classes):
            files = _image_files(os.path.join(directory, cls))
            paths += files
            labels += [label] * len(files)
        num_classes = len(classes)
    else:
        paths = _image_files(directory)
        labels, num_classes = [-1] * len(paths), 0
    if not paths:
        raise DataError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {directory!r}. "
                        "Put them in class subfolders (folder/<class>/<image>) or directly "
                        "in the folder.")
    path_table = tf.constant(paths)
    label_table = tf.constant(np.asarray(labels, np.int32))

    def read_encoded(index):
        return {"encoded": tf.io.read_file(tf.gather(path_table, index)),
                "label": tf.gather(label_table, index)}

    def read(index):
        example = read_encoded(index)
        return {"image": _decode_image(example["encoded"], channels), "label": example["label"]}

    return Split(directory, len(paths), num_classes, read=read, describe=lambda i: paths[i],
                 channels=channels, read_encoded=read_encoded)


# --- dispatch -----------------------------------------------------------------------------

PURPOSES = ("train", "eval_train", "eval_test")


TRANSFER_SOURCES = ("digits", "tfds", "folder")


def transfer_split(data_config, name):
    """A split of another data set than the run's, named in ``data.extra_eval_splits`` as
    ``digits:<split>``, ``tfds:<name>:<split>`` or ``folder:<directory>`` (for a transfer
    probe: an evaluator's ``train_split`` / ``split``); read with the run's channels."""
    source, _, rest = name.partition(":")
    c = data_config
    if source == "digits":
        return digits_split(rest)
    if source == "folder":
        return folder_split(rest, c.channels)
    dataset, _, split = rest.partition(":")
    if not dataset or not split:
        raise DataError(f"data.extra_eval_splits has {name!r}; a TFDS split is named "
                        "tfds:<name>:<split>, e.g. tfds:cifar10:test.")
    return tfds_split(dataset, split, c.data_dir, c.cache_eval_in_memory, c.channels)


def load_split(data_config, purpose, name=None):
    """The split used for ``purpose`` ('train', 'eval_train' or 'eval_test'), or None.

    ``eval_train`` provides labelled features for kNN and the probes; ``eval_test`` is the
    held-out split they are scored on. None means the source has no such split. Purpose
    ``eval_extra`` loads the split ``name`` of the source (``data.extra_eval_splits``), or of
    another data set (``transfer_split``).
    The image-text sources (``cl_jax.data.captions``) have no ``eval_train`` split (no labels);
    'csv' trains on ``csv_path`` and tests on ``eval_csv_path`` (if set), 'webdataset' on
    ``shards`` and ``eval_shards``, 'coco' on the ``*_split`` splits of coco_captions.
    """
    c = data_config
    if purpose == "eval_extra" and name.partition(":")[0] in TRANSFER_SOURCES:
        return transfer_split(c, name)
    split_name = name if purpose == "eval_extra" else c.get(f"{purpose}_split")
    if c.source == "digits":
        return digits_split(split_name)
    if c.source == "moving_digits":
        from cl_jax.data.moving_digits import moving_digits_split

        return moving_digits_split(split_name, c.canvas_size, c.clip_length, c.frame_stack,
                                   tuple(c.clip_speed), c.clip_seed, c.cameras)
    if c.source == "craftax":
        from cl_jax.data.craftax_frames import craftax_split

        return craftax_split(split_name, c.data_dir, c.craftax_envs, c.craftax_steps,
                             c.frame_stack, c.clip_seed)
    if c.source == "glyphs":
        return glyph_split(split_name, size=c.glyph_size, fonts=c.glyph_fonts,
                           seed=c.glyph_seed, code_points=c.glyph_code_points)
    if c.source == "tfds":
        in_memory = c.cache_in_memory if purpose == "train" else c.cache_eval_in_memory
        return tfds_split(c.name, split_name, c.data_dir, in_memory, c.channels)
    if c.source == "folder":
        directory = name if purpose == "eval_extra" else c[f"{purpose}_dir"]
        if purpose == "eval_train" and not directory:
            directory = c.train_dir
        if not directory:
            return None
        return folder_split(directory, c.channels)
    if c.source in ("csv", "webdataset", "coco"):  # image-text sources, unlabelled
        from cl_jax.data import captions

        if purpose == "eval_train":  # no labels for kNN or a probe to fit
            return None
        if c.source == "coco":
            in_memory = c.cache_in_memory if purpose == "train" else c.cache_eval_in_memory
            return captions.coco_split(split_name, c.data_dir, in_memory, c.channels,
                                       name=c.name or "coco_captions")
        field = {"csv": "csv_path", "webdataset": "shards"}[c.source]
        where = name if purpose == "eval_extra" else c[
            field if purpose == "train" else f"eval_{field}"]
        if not where and purpose != "train":
            return None
        if c.source == "csv":
            return captions.csv_split(where, c.csv_image_column, c.csv_caption_column,
                                      c.channels)
        return captions.webdataset_split(where, c.channels)
    raise DataError(f"data.source must be 'digits', 'moving_digits', 'craftax', 'glyphs', "
                    f"'tfds', 'folder', 'csv', 'webdataset' or 'coco', got {c.source!r}.")
