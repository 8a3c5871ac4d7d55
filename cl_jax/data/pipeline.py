"""The host input pipeline: which examples, in which order, made into which views.

Training data is an endless stream over epochs. For a random-access split the order is a
pure function of (seed, position): global position ``k`` is epoch ``k // N``, and the
example is ``index_shuffle(k % N, seed=(seed, epoch))`` — a different permutation every
epoch, computed without materialising it. Global batch ``t`` is positions
``[t * B, (t + 1) * B)``, and process ``p`` reads only its rows ``[p * b, (p + 1) * b)`` of
it. Each example's augmentation seed is derived from (seed, epoch, index). Hence the batches
of a run depend only on the seed and the step: a resumed run gets exactly the batches an
uninterrupted one would, and 1 process x 4 devices sees the same global batches as
2 processes x 2 devices.

Streamed (TFDS) splits are read per process (``tfds.split_for_jax_process``) and shuffled
per epoch with a buffer seeded by (seed, epoch); a resume skips the records already seen
before decoding anything. A record's augmentation seed is derived from (seed, epoch, its row
in the prepared split), so it is augmented alike whichever process reads it. A split without
rows (one joining splits, 'a+b', or without shard lengths) uses instead the record's place
``p * n + i`` in process ``p``'s epoch of ``n`` records: never the same on two processes, but
then the randomness depends on the process count.

Unreadable images (random-access splits): ``HostBatches`` finds the file behind a failed
batch and either stops with its name (``bad_images='fail'``) or skips it
(``bad_images='skip'``): the pipeline restarts at the same step with the image replaced by
the next readable one. A replacement depends only on which files are unreadable, so the
batches stay a function of the step, and a resumed run still matches an uninterrupted one.
"""

import collections

import numpy as np
import tensorflow as tf
from absl import logging

from cl_jax import parallel
from cl_jax.data.augment import (
    ViewAugment,
    augment_view,
    center_crop,
    normalize,
    split_seed,
    to_color_space,
)
from cl_jax.errors import DataError

AUTOTUNE = tf.data.AUTOTUNE


def permutation_seed(seed, epoch):
    """Seed of one epoch's example order: shape [2], int64."""
    return tf.stack([tf.cast(seed, tf.int64), -1 - tf.cast(epoch, tf.int64)])


def shuffled_index(seed, position, num_examples):
    """(epoch, example index) at ``position`` of the endless shuffled stream."""
    position = tf.cast(position, tf.int64)
    epoch = position // num_examples
    index = tf.random.experimental.index_shuffle(
        position % num_examples, permutation_seed(seed, epoch),
        tf.constant(num_examples - 1, tf.int64))
    return epoch, index


def example_seed(seed, epoch, index):
    """Augmentation seed of one example in one epoch, from (seed, epoch, index).

    ``index``: the example's index in a random-access split, its row in a streamed one, or
    else its place in the processes' epoch (see the module docstring). Distinct for every
    triple while epoch < 2**20; Philox decorrelates neighbouring seeds.
    """
    seed, epoch = tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)
    return tf.stack([seed * 2**20 + epoch, tf.cast(index, tf.int64)])


def make_views(example, seed, views, mean, std, index=-1, colour=True, channels=None,
               text_augment=None, color_space="rgb"):
    """``{'views': (v1, v2, ...), 'label', 'index'}`` with each view normalised, float32.

    ``example`` has a decoded ``image`` or the ``encoded`` bytes of one with ``channels``
    channels (each view then decodes only its crop of a JPEG). ``index`` is the example's
    index in its split (memory banks key on it; see ``Split.index_size``), -1 if it has none.
    ``colour=False``: views only cropped and flipped, in [0, 1], for the colour ops and
    normalisation on the accelerator; else each view is converted to ``color_space``
    (``augment.to_color_space``) before the normalisation. An example with ``tokens`` (a
    caption) keeps them, passed through ``text_augment(tokens, seed)`` if given; with
    ``num_captions`` (several captions, ``tokens`` (C, L)) one of its first ``num_captions`` is
    drawn from the example's seed.
    A text example (``sentences`` (K, L), ``score``; ``cl_jax.data.text``) has no image: its
    sentences are passed through ``text_augment`` one by one, each with its own seed.
    """
    out = {"label": example["label"], "index": tf.cast(index, tf.int32)}
    if "sentences" in example:  # a text example: K sentences, no image
        return dict(out, score=example["score"],
                    sentences=augment_sentences(example["sentences"], seed, text_augment))
    seeds = split_seed(seed, len(views))
    image = example["encoded"] if "encoded" in example else example["image"]
    made = tuple(augment_view(image, s, v, colour, channels)
                 for s, v in zip(seeds, views, strict=True))
    if colour:
        made = tuple(normalize(to_color_space(view, color_space), mean, std) for view in made)
    out["views"] = made
    if "tokens" in example:  # an image-text example: its caption's token ids
        tokens = example["tokens"]
        text_seed = tf.random.experimental.stateless_fold_in(seed, 1)  # the views' unchanged
        if "num_captions" in example:  # several captions: one, drawn per example and epoch
            pick = tf.random.stateless_uniform([], tf.random.experimental.stateless_fold_in(
                text_seed, 1), 0, example["num_captions"], tf.int32)
            tokens = tokens[pick]
        if text_augment is not None:
            tokens = text_augment(tokens, text_seed)
        out["tokens"] = tokens
    return out


def augment_sentences(sentences, seed, text_augment=None):
    """``sentences`` (K, L) token ids, each row through ``text_augment(tokens, seed)`` with
    its own seed drawn from the example's."""
    if text_augment is None:
        return sentences
    count = tf.shape(sentences)[0]
    seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 1), count)
    return tf.map_fn(lambda args: text_augment(args[0], args[1]), (sentences, seeds),
                     fn_output_signature=sentences.dtype)


def rows_of_batch(step, global_batch, process_index, process_count):
    """Global stream positions of this process's rows of global batch ``step``."""
    local = global_batch // process_count
    start = tf.cast(step, tf.int64) * global_batch + process_index * local
    return tf.data.Dataset.range(start, start + local)


def replacements(bad_indices, num_examples):
    """``{bad index: the next readable index}`` (cyclically); an error if none is readable."""
    bad = set(int(i) for i in bad_indices)
    if len(bad) >= num_examples:
        raise DataError(f"None of the {num_examples} images can be read.")
    table = {}
    for index in sorted(bad):
        other = (index + 1) % num_examples
        while other in bad:
            other = (other + 1) % num_examples
        table[index] = other
    return table


def substitute_fn(bad_indices, num_examples):
    """A tf function: index -> (index to read instead, whether ``index`` is unreadable)."""
    table = replacements(bad_indices, num_examples)
    if not table:
        return lambda index: (index, tf.constant(False))
    lookup = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(table), tf.int64), tf.constant(list(table.values()), tf.int64)), -1)

    def substitute(index):
        index = tf.cast(index, tf.int64)
        other = lookup.lookup(index)
        return tf.where(other >= 0, other, index), other >= 0

    return substitute


def train_dataset(split, views, *, seed, global_batch, start_step=0, mean, std,
                  process_index=0, process_count=1, shuffle_buffer=16384, bad_indices=(),
                  colour=True, fused_crop=False, text_augment=None, color_space="rgb"):
    """Endless tf.data stream of this process's rows of each global batch, from ``start_step``.

    ``bad_indices``: unreadable examples of a random-access split; each is replaced by the
    next readable one (its augmentation seed stays that of its own position). ``colour``:
    see ``make_views``. ``fused_crop``: read image files encoded and decode only each view's
    crop of a JPEG (the same pixels; less work for one view per image, not for two or more,
    which share one whole decoding when False). ``text_augment(tokens, seed)``: applied to an
    image-text example's caption tokens (``cl_jax.data.text_augment``). ``color_space``:
    the views' colour space before normalisation (``"rgb"`` or ``"lab"``).
    """
    local = global_batch // process_count
    views = [v if isinstance(v, ViewAugment) else ViewAugment.from_config(v) for v in views]
    if split.random_access:
        n = split.num_examples
        substitute = substitute_fn(bad_indices, n)

        reader = split.read_encoded if fused_crop and split.read_encoded else split.read

        def lookup(position):
            epoch, index = shuffled_index(seed, position, n)
            read = substitute(index)[0]
            return epoch, index, dict(reader(read), index=read)

        ds = tf.data.Dataset.counter(start_step).flat_map(
            lambda step: rows_of_batch(step, global_batch, process_index, process_count))
        ds = ds.map(lookup, num_parallel_calls=AUTOTUNE)
    else:
        n = split.num_examples // process_count
        records = split.stream(process_index, process_count, drop_remainder=True)
        start = start_step * local

        def epoch_records(epoch):
            shuffled = records.shuffle(min(shuffle_buffer, n), seed=seed * 2**20 + epoch)
            places = shuffled.enumerate(process_index * n)
            return places.map(lambda place, record: (epoch, place, record))

        decode = split.decode_encoded if fused_crop and split.decode_encoded else split.decode

        def decoded(epoch, place, record):
            example = decode(record)
            return epoch, example.get("index", place), example

        ds = tf.data.Dataset.counter(start // n).flat_map(epoch_records).skip(start % n)
        ds = ds.map(decoded, num_parallel_calls=AUTOTUNE)
    ds = ds.map(lambda epoch, index, example: make_views(
        example, example_seed(seed, epoch, index), views, mean, std,
        example.get("index", -1), colour, split.channels, text_augment, color_space),
        num_parallel_calls=AUTOTUNE)
    return ds.batch(local, drop_remainder=True).prefetch(AUTOTUNE)


def eval_dataset(split, *, size, crop_fraction, mean, std, global_batch, process_index=0,
                 process_count=1, max_examples=-1, start_batch=0, bad_indices=(),
                 color_space="rgb"):
    """One deterministic pass over a split: ``{'image', 'label', 'mask'}`` batches.

    Every process yields the same number of batches; rows past the end are padding with
    ``mask == 0``. Random-access splits are read in index order, process ``p`` taking rows
    ``[p * b, (p + 1) * b)`` of each global batch; streamed splits per process. Rows of
    ``bad_indices`` (unreadable images) are masked out too. ``start_batch`` skips batches.
    ``color_space``: as ``train_dataset``'s.
    """
    local = global_batch // process_count
    total = split.num_examples if max_examples < 0 else min(max_examples, split.num_examples)

    def preprocess(example):
        image = tf.image.convert_image_dtype(example["image"], tf.float32)
        image = to_color_space(center_crop(image, size, crop_fraction), color_space)
        image = normalize(image, mean, std)
        return {"image": image, "label": example["label"]}

    if split.random_access:
        num_batches = -(-total // global_batch)
        substitute = substitute_fn(bad_indices, split.num_examples)

        def read(position):
            index, bad = substitute(tf.minimum(position, total - 1))
            mask = tf.cast(tf.logical_and(position < total, tf.logical_not(bad)), tf.float32)
            return dict(preprocess(split.read(index)), mask=mask)

        positions = tf.data.Dataset.range(start_batch, num_batches).flat_map(
            lambda step: rows_of_batch(step, global_batch, process_index, process_count))
        ds = positions.map(read, num_parallel_calls=AUTOTUNE)
    else:
        per_process = -(-total // process_count)
        num_batches = -(-per_process // local)
        records = split.stream(process_index, process_count, drop_remainder=False)
        real = records.map(lambda r: dict(preprocess(split.decode(r)), mask=1.0),
                           num_parallel_calls=AUTOTUNE)
        pad = real.take(1).map(lambda ex: dict(ex, mask=0.0)).repeat()
        ds = real.concatenate(pad).take(num_batches * local).skip(start_batch * local)
    return ds.batch(local, drop_remainder=True).prefetch(AUTOTUNE), num_batches


def unreadable(split, indices):
    """``[(index, error message)]`` for each of ``indices`` whose image cannot be read."""
    found = []
    for index in sorted(set(int(i) for i in indices)):
        try:
            split.read(tf.constant(index, tf.int64))["image"].numpy()
        except tf.errors.OpError as err:
            found.append((index, err.message.strip().splitlines()[0]))
    return found


def bad_image_error(split, bad):
    index, message = bad[0]
    return DataError(f"Cannot read image {split.describe(index)} ({message}). Remove or "
                     "replace the file, or set --config.data.bad_images=skip to skip "
                     "unreadable images.")


class BadImages:
    """The unreadable images found so far in one split, and what to do about them."""

    POLICIES = ("skip", "fail")

    def __init__(self, split, policy="fail"):
        if policy not in self.POLICIES:
            raise DataError(f"data.bad_images must be 'skip' or 'fail', got {policy!r}.")
        self.split, self.policy, self.indices = split, policy, set()

    def handle(self, err, indices, where):
        """Called when reading ``indices`` failed with ``err``: raises, or records and warns.

        Returns True if the caller should rebuild its dataset and retry.
        """
        message = err.message.strip().splitlines()[0]
        if not self.split.random_access:
            raise DataError(f"Reading {self.split.name} failed at {where}: {message}") from None
        # A row reads its own image, or the replacement of a known unreadable one.
        table = replacements(self.indices, self.split.num_examples)
        candidates = {table.get(int(i), int(i)) for i in indices}
        bad = [(i, m) for i, m in unreadable(self.split, candidates) if i not in self.indices]
        if not bad:
            raise DataError(f"Reading {self.split.name} failed at {where}: {message}") from None
        if self.policy == "fail":
            raise bad_image_error(self.split, bad) from None
        for index, why in bad:
            self.indices.add(index)
            logging.warning("Skipping unreadable image %s (%s); %d skipped so far in %s. "
                            "Set --config.data.bad_images=fail to stop instead.",
                            self.split.describe(index), why, len(self.indices),
                            self.split.name)
        return True


class HostBatches:
    """Iterates a train dataset as numpy batches, handling unreadable images.

    tf.data reports a failed decode without saying which file; since batch ``t``'s
    examples are a function of ``t``, the culprits are found by reading them one by one.
    ``bad_images='fail'`` raises a DataError naming the file; ``'skip'`` records it and
    calls ``rebuild(start_step, bad_indices)`` for a dataset that replaces it, from the same
    step (needed for 'skip').
    """

    def __init__(self, dataset, split, *, seed, global_batch, start_step, process_index=0,
                 process_count=1, bad_images="fail", rebuild=None):
        if bad_images == "skip" and rebuild is None:
            raise ValueError("bad_images='skip' needs rebuild(start_step, bad_indices).")
        self._iterator = dataset.as_numpy_iterator()
        self._split = split
        self._args = (global_batch, process_index, process_count)
        self._seed = seed
        self._rebuild = rebuild
        self.bad_images = BadImages(split, bad_images)
        self.step = start_step

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            try:
                batch = next(self._iterator)
                break
            except tf.errors.OpError as err:
                self.bad_images.handle(err, self._indices(self.step), f"step {self.step}")
                dataset = self._rebuild(self.step, sorted(self.bad_images.indices))
                self._iterator = dataset.as_numpy_iterator()
        self.step += 1
        return batch

    def _indices(self, step):
        if not self._split.random_access:
            return []
        positions = rows_of_batch(step, *self._args).as_numpy_iterator()
        return [int(shuffled_index(self._seed, p, self._split.num_examples)[1])
                for p in positions]


def eval_batches(split, bad_images="fail", **kwargs):
    """Iterates ``eval_dataset(split, **kwargs)`` as numpy batches; unreadable images are
    skipped (masked out) or reported as in ``HostBatches``."""
    handler = BadImages(split, bad_images)
    ds, num_batches = eval_dataset(split, **kwargs)
    iterator, done = ds.as_numpy_iterator(), 0
    total = split.num_examples if kwargs.get("max_examples", -1) < 0 else min(
        kwargs["max_examples"], split.num_examples)
    while done < num_batches:
        try:
            batch = next(iterator)
        except tf.errors.OpError as err:
            positions = rows_of_batch(done, kwargs["global_batch"],
                                      kwargs.get("process_index", 0),
                                      kwargs.get("process_count", 1)).as_numpy_iterator()
            indices = np.minimum(np.fromiter(positions, np.int64), total - 1)
            handler.handle(err, indices, f"evaluation batch {done}")
            ds, _ = eval_dataset(split, start_batch=done, bad_indices=sorted(handler.indices),
                                 **kwargs)
            iterator = ds.as_numpy_iterator()
            continue
        done += 1
        yield batch


def prefetch_to_device(batches, mesh, size=2):
    """Yields global device arrays, keeping ``size`` batches in flight (transfers are async)."""
    queue = collections.deque()

    def enqueue():
        batch = next(batches, None)
        if batch is not None:
            queue.append(parallel.to_global(batch, mesh))

    for _ in range(size):
        enqueue()
    while queue:
        yield queue.popleft()
        enqueue()

