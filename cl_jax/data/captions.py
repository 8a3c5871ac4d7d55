"""Image-text data sources: open_clip's caption TSV, webdataset tar shards, TFDS COCO captions.

Each gives a ``sources.Split`` with ``captions`` set and no labels (label -1):

- ``csv_split``: a tab-separated file with a header row, an image path and a caption per row
  (open_clip's ``CsvDataset`` convention). Random access; ``captions`` holds one string per row.
- ``webdataset_split``: tar shards as img2dataset writes them (``KEY.jpg`` / ``KEY.png``, its
  caption ``KEY.txt``, maybe ``KEY.json``). Streamed: a record's ``decode`` gives its
  ``caption`` (a tf.string); ``captions`` is () since they are known only by reading the tars.
- ``coco_split``: TFDS ``coco_captions`` (the Karpathy splits), about five captions an image.
  Random access when held in memory (``captions``: a tuple of every image's captions), else
  streamed (``decode`` gives all of an image's ``captions``, a tf.string vector).

``caption_tokenizer_op`` tokenises captions inside tf.data, exactly as ``Tokenizer.encode``;
``first_captions`` gives a split's first captions (e.g. to train a tokenizer on a stream).
"""

import contextlib
import csv
import os
import posixpath
import re
import tarfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from cl_jax.data import sources
from cl_jax.data.sources import Split
from cl_jax.errors import ConfigError, DataError

NO_LABEL = -1


def _no_label():
    return tf.constant(NO_LABEL, tf.int32)


# --- open_clip's caption TSV --------------------------------------------------------------


def csv_split(path, image_column="filepath", caption_column="title", channels=3,
              delimiter="\t"):
    """Images and captions listed in a delimited file with a header row naming its columns.

    Image paths are absolute or relative to the file's folder (open_clip's ``CsvDataset``
    reads them from the working directory; its ``--csv-img-key`` / ``--csv-caption-key``
    default to these columns). Every listed image must exist (checked once here: one
    ``stat`` a row) and every caption be non-empty. ``read(index)`` reads and decodes an
    image, as ``sources.folder_split`` does.
    """
    rows = _read_table(path, image_column, caption_column, delimiter)
    folder = os.path.dirname(os.path.abspath(path))
    paths = [os.path.join(folder, image) for image, _ in rows]  # keeps an absolute path
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{len(missing)} of the {len(paths)} images listed in {path} do not "
                        f"exist, e.g. {', '.join(missing[:3])} (relative paths start at the "
                        f"file's folder {folder}). Fix their paths, or delete their rows.")
    path_table = tf.constant(paths)

    def read_encoded(index):
        return {"encoded": tf.io.read_file(tf.gather(path_table, index)), "label": _no_label()}

    def read(index):
        example = read_encoded(index)
        return {"image": sources._decode_image(example["encoded"], channels),
                "label": example["label"]}

    return Split(path, len(paths), 0, read=read, describe=lambda i: paths[i],
                 channels=channels, read_encoded=read_encoded,
                 captions=tuple(caption for _, caption in rows))


def _read_table(path, image_column, caption_column, delimiter):
    """``[(image path, caption)]`` of the rows of the caption file ``path``."""
    if not path or not os.path.isfile(path):
        raise DataError(f"Caption file {path!r} does not exist; set --config.data.csv_path (and "
                        "eval_csv_path) to a tab-separated file with a header row and an image "
                        "path and its caption on each row (open_clip's format).")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if not header:
                raise DataError(f"Caption file {path} is empty; its first row must name the "
                                "columns.")
            columns = _column_indices(path, header, image_column, caption_column)
            rows = [_row(path, number, row, reader.line_num, columns)
                    for number, row in enumerate(reader, 1) if row]
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"Cannot read the caption file {path}: {err}. It must be UTF-8 text, "
                        "one row a line, fields separated by tabs.") from None
    if not rows:
        raise DataError(f"Caption file {path} has a header but no rows.")
    return rows


def _column_indices(path, header, image_column, caption_column):
    missing = [c for c in (image_column, caption_column) if c not in header]
    if not missing:
        return header.index(image_column), header.index(caption_column)
    hint = (" (one column: is the file not tab-separated?)" if len(header) == 1 else "")
    raise DataError(f"The header of {path} has the columns {', '.join(map(repr, header))}"
                    f"{hint}, but no {' or '.join(map(repr, missing))}. Name the image path "
                    "and caption columns with --config.data.csv_image_column=<column> and "
                    "--config.data.csv_caption_column=<column>.")


def _row(path, number, row, line, columns):
    image, caption = (row[i] if i < len(row) else "" for i in columns)
    where = f"Row {number} of {path} (line {line})"
    if not image.strip():
        raise DataError(f"{where} has no image path; give it one, or delete the row.")
    if not caption.strip():
        raise DataError(f"{where} has an empty caption; give the image a caption, or delete "
                        "the row.")
    return image.strip(), caption


# --- webdataset tar shards ----------------------------------------------------------------

IMAGE_SUFFIXES = ("jpg", "jpeg", "png")
CAPTION_SUFFIX = "txt"
SHARDS_READ_AT_ONCE = 4  # a fixed number, so the records' order is the same on any machine
_RECORD_SIGNATURE = {"key": tf.TensorSpec([], tf.string), "image": tf.TensorSpec([], tf.string),
                     "caption": tf.TensorSpec([], tf.string),
                     "index": tf.TensorSpec([], tf.int64)}


def expand_braces(pattern):
    """Every path of bash-style ranges: ``"d/{08..10}.tar"`` -> d/08.tar, d/09.tar, d/10.tar.

    Numbers are zero-padded to the wider bound when a bound is written with a leading zero,
    as bash does; a pattern may hold several ranges (``{0..1}/{0..1}`` gives 4 paths).
    """
    match = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if not match:
        return [pattern]
    first, last = match.groups()
    padded = any(len(b) > 1 and b.startswith("0") for b in (first, last))
    width = max(len(first), len(last)) if padded else 0
    step = 1 if int(last) >= int(first) else -1
    head, tails = pattern[:match.start()], expand_braces(pattern[match.end():])
    return [f"{head}{str(i).zfill(width)}{tail}"
            for i in range(int(first), int(last) + step, step) for tail in tails]


def shard_paths(pattern):
    """The tar files of ``pattern`` (brace ranges, then globs), in the pattern's order."""
    found, missing = [], []
    for name in expand_braces(pattern):
        if re.search(r"[*?[]", name):
            found += sorted(tf.io.gfile.glob(name))
        elif tf.io.gfile.exists(name):
            found.append(name)
        else:
            missing.append(name)
    if not found:
        raise DataError(f"No tar shards match {pattern!r}; set --config.data.shards (and "
                        "eval_shards) to the shards' paths, e.g. DIR/{00000..00099}.tar or "
                        "DIR/*.tar.")
    if missing:
        raise DataError(f"{len(missing)} of the shards {pattern!r} names do not exist, e.g. "
                        f"{missing[0]}; fix the range, or use a glob (DIR/*.tar) to read only "
                        "the shards present.")
    return list(dict.fromkeys(found))


@contextlib.contextmanager
def _open_tar(path):
    """An uncompressed tar file, local or on storage TF can read (``gs://...``)."""
    with (tf.io.gfile.GFile(path, "rb") if "://" in path else open(path, "rb")) as f, \
            tarfile.open(fileobj=f, mode="r:") as tar:
        yield tar


def _samples(tar):
    """``(key, {suffix: member})`` of each run of consecutive files sharing a key, as
    webdataset groups them: ``dir/000123.jpg`` has key ``dir/000123`` and suffix ``jpg``."""
    key, parts = None, {}
    for member in tar:
        folder, name = posixpath.split(member.name)
        stem, dot, suffix = name.partition(".")
        if not member.isfile() or not dot or not stem:
            continue
        if posixpath.join(folder, stem) != key:
            if parts:
                yield key, parts
            key, parts = posixpath.join(folder, stem), {}
        parts[suffix.lower()] = member
    if parts:
        yield key, parts


def _image_and_caption(parts):
    """A sample's image and caption members, or None if it lacks either (or the caption is
    empty): such samples are skipped."""
    image = next((parts[s] for s in IMAGE_SUFFIXES if s in parts), None)
    caption = parts.get(CAPTION_SUFFIX)
    if image is None or caption is None or caption.size == 0:
        return None
    return image, caption


def _count_samples(path):
    """(complete samples, incomplete ones) of one shard, from its member headers only."""
    complete = incomplete = 0
    try:
        with _open_tar(path) as tar:
            for _, parts in _samples(tar):
                if _image_and_caption(parts):
                    complete += 1
                else:
                    incomplete += 1
    except (OSError, tarfile.TarError, tf.errors.OpError) as err:
        raise DataError(f"Cannot read the tar shard {path} ({err}); it must be an uncompressed "
                        "tar file (as img2dataset writes). Replace or remove it.") from None
    return complete, incomplete


def _read_piece(path, first, stop, offset):
    """Records of the complete samples ``first`` to ``stop - 1`` of one shard; the sample
    ``j`` is row ``offset + j`` of the whole split."""
    with _open_tar(path.decode()) as tar:
        row = 0
        for key, parts in _samples(tar):
            found = _image_and_caption(parts)
            if found is None:
                continue
            if row >= first:
                image, caption = (tar.extractfile(m).read() for m in found)
                yield {"key": key, "image": image, "caption": caption, "index": offset + row}
            row += 1
            if row >= stop:
                return


def process_rows(num_examples, process_index, process_count, drop_remainder):
    """This process's rows ``[start, stop)`` of a split: contiguous shares of one size
    (``num_examples // process_count``, the rest dropped) or, without ``drop_remainder``,
    shares differing by at most one that cover every row (as ``tfds.split_for_jax_process``).
    """
    if drop_remainder:
        share = num_examples // process_count
        return process_index * share, (process_index + 1) * share
    return (process_index * num_examples // process_count,
            (process_index + 1) * num_examples // process_count)


def webdataset_split(pattern, channels=3):
    """Image-caption samples of tar shards, streamed (webdataset / img2dataset format).

    ``pattern``: bash brace ranges (``DIR/{00000..00099}.tar``) and/or a glob (``DIR/*.tar``).
    A sample is the consecutive files sharing a key; one without an image (.jpg, .jpeg,
    .png) or a non-empty caption (.txt) is skipped (counted, and logged once, here).

    Construction counts every shard's samples, reading only the tar headers: one seek and
    512 bytes a member, about 40 us each with Python's ``tarfile`` on a local disk, so 1 s
    for 10k samples of 3 files (img2dataset's shard size), 2 min for a million samples; every
    process pays it, at every start. The counts give each process an equal contiguous share
    of the samples (``process_rows``; so every process has the same number of batches), read
    from the shards that hold it, ``SHARDS_READ_AT_ONCE`` interleaved; a record's ``index`` is
    its row in the whole split.
    """
    paths = shard_paths(pattern)
    counts = [_count_samples(p) for p in paths]
    complete = [c for c, _ in counts]
    num_examples, skipped = sum(complete), sum(i for _, i in counts)
    if skipped:
        logging.warning("%d samples of %s lack an image (%s) or a non-empty caption (.%s); "
                        "they are skipped.", skipped, pattern, ", ".join(IMAGE_SUFFIXES),
                        CAPTION_SUFFIX)
    if not num_examples:
        raise DataError(f"The {len(paths)} shards of {pattern!r} hold no sample with both an "
                        f"image ({', '.join(IMAGE_SUFFIXES)}) and a caption (.txt).")
    offsets = np.cumsum([0, *complete[:-1]]).tolist()

    def stream(process_index, process_count, drop_remainder):
        if num_examples < process_count:
            raise DataError(f"{pattern!r} holds {num_examples} samples, fewer than the "
                            f"{process_count} processes reading it.")
        start, stop = process_rows(num_examples, process_index, process_count, drop_remainder)
        pieces = [(p, max(start - o, 0), min(stop - o, n), o)
                  for p, o, n in zip(paths, offsets, complete, strict=True)
                  if o < stop and o + n > start]
        columns = tuple(list(column) for column in zip(*pieces, strict=True))
        return tf.data.Dataset.from_tensor_slices(columns).interleave(
            lambda *piece: tf.data.Dataset.from_generator(
                _read_piece, output_signature=_RECORD_SIGNATURE, args=piece),
            cycle_length=SHARDS_READ_AT_ONCE, num_parallel_calls=SHARDS_READ_AT_ONCE,
            deterministic=True)

    def decode_encoded(record):
        return {"encoded": record["image"], "label": _no_label(),
                "caption": tf.strings.strip(record["caption"]),
                "index": tf.cast(record["index"], tf.int32)}

    def decode(record):
        example = decode_encoded(record)
        example["image"] = sources._decode_image(example.pop("encoded"), channels)
        return example

    return Split(pattern, num_examples, 0, stream=stream, decode=decode, channels=channels,
                 decode_encoded=decode_encoded, index_size=num_examples, captions=())


# --- TFDS COCO captions (Karpathy splits) -------------------------------------------------


# The features read (the encoded image, its file name, the captions' texts), of coco_captions':
# image, image/filename, image/id, objects, captions {id, text}.
COCO_DECODERS = tfds.decode.PartialDecoding(
    {"image": True, "image/filename": True, "captions": {"text": True}},
    decoders={"image": tfds.decode.SkipDecoding()})


def coco_split(split, data_dir=None, in_memory=True, channels=3, name="coco_captions"):
    """A split of TFDS ``coco_captions`` ('train', 'val', 'test', 'restval'; 'train+restval'
    is the usual Karpathy training set), or of a data set with its features (``name``).

    ``in_memory=True`` holds the split's encoded JPEGs in memory (about 160 kB an image:
    0.8 GB for val or test, 18 GB for train+restval) and gives a random-access split whose
    ``captions[i]`` are all captions of image ``i``. Otherwise the split is streamed as
    ``sources.tfds_split`` streams one, each record with all its image's ``captions``.
    """
    builder = sources._tfds_builder(name, data_dir)
    record_index = None if in_memory else sources._tfds_record_index(builder, split)
    read_config = tfds.ReadConfig(add_tfds_id=True) if record_index else None

    def as_dataset(which):
        try:
            return builder.as_dataset(split=which, shuffle_files=False, decoders=COCO_DECODERS,
                                      read_config=read_config)
        except (AssertionError, FileNotFoundError, ValueError) as err:
            raise sources._not_prepared(name, split, data_dir, err) from None

    if in_memory:
        return _coco_in_memory(f"{name}/{split}", as_dataset(split), channels)

    num_examples = int(as_dataset(split).cardinality())
    if num_examples <= 0:
        raise DataError(f"TFDS split {name}/{split} is empty or of unknown size.")

    def decode_encoded(record):
        example = {"encoded": record["image"], "label": _no_label(),
                   "captions": record["captions"]["text"]}
        if record_index:
            example["index"] = record_index[0](record["tfds_id"])
        return example

    def decode(record):
        example = decode_encoded(record)
        example["image"] = sources._decode_image(example.pop("encoded"), channels)
        return example

    def stream(process_index, process_count, drop_remainder):
        return as_dataset(tfds.split_for_jax_process(
            split, process_index=process_index, process_count=process_count,
            drop_remainder=drop_remainder))

    return Split(f"{name}/{split}", num_examples, 0, stream=stream, decode=decode,
                 channels=channels, decode_encoded=decode_encoded,
                 index_size=record_index[1] if record_index else 0, captions=())


def _coco_in_memory(name, records, channels):
    images, files, captions = [], [], []
    for record in records.as_numpy_iterator():
        images.append(record["image"])
        files.append(record["image/filename"].decode())
        captions.append(tuple(t.decode() for t in record["captions"]["text"]))
    if not images:
        raise DataError(f"TFDS split {name} is empty.")
    table = tf.constant(images)

    def read_encoded(index):
        return {"encoded": tf.gather(table, index), "label": _no_label()}

    def read(index):
        return {"image": sources._decode_image(tf.gather(table, index), channels),
                "label": _no_label()}

    return Split(name, len(images), 0, read=read, describe=lambda i: f"{name} {files[i]}",
                 channels=channels, read_encoded=read_encoded, captions=tuple(captions))


# --- captions as token ids ----------------------------------------------------------------


def caption_tokenizer_op(tokenizer, max_len):
    """A TF function: captions (tf.string, any shape S) -> int32 ids (S + [max_len]).

    The same ids as ``tokenizer.encode(captions, max_len)`` (a ``cl_jax.data.tokenizer``
    Tokenizer): the sentencepiece pieces, cut to ``max_len - 1``, then EOS, then padding; run
    in tf.data by tensorflow-text's sentencepiece op on the tokenizer's own model.
    """
    try:
        import tensorflow_text  # only image-text runs on streamed captions need it
    except ImportError as err:
        raise ConfigError(
            "Streamed captions (webdataset shards, or coco_captions not cached in memory) are "
            "tokenised in tf.data by tensorflow-text: pip install --no-deps "
            "tensorflow-text==2.21.1 (--no-deps keeps tensorflow-cpu), or cache the split "
            "in memory (--config.data.cache_in_memory=True).") from err

    if max_len < 2:
        raise ValueError(f"caption_tokenizer_op: max_len {max_len} leaves no room for text "
                         "besides the EOS token.")
    pieces_of = tensorflow_text.SentencepieceTokenizer(model=tokenizer.model_bytes,
                                                       out_type=tf.int32)
    eos, pad = tokenizer.eos_id, tokenizer.pad_id

    def encode(captions):
        captions = tf.convert_to_tensor(captions, tf.string)
        pieces = pieces_of.tokenize(tf.reshape(captions, [-1]))[:, :max_len - 1]
        ends = tf.fill([pieces.nrows(), 1], tf.constant(eos, tf.int32))
        ids = tf.concat([pieces, ends], axis=1).to_tensor(default_value=pad,
                                                          shape=[None, max_len])
        return tf.reshape(ids, tf.concat([tf.shape(captions), [max_len]], 0))

    return encode


def captions_of(split):
    """Every caption of a split and the example it describes: (texts, example indices). An
    example has one caption (a string) or several (a tuple)."""
    texts, example = [], []
    for i, caption in enumerate(split.captions):
        several = caption if isinstance(caption, tuple | list) else (caption,)
        texts += list(several)
        example += [i] * len(several)
    return texts, np.asarray(example, np.int64)


def first_captions(split, count):
    """The first ``count`` captions of ``split`` in a fixed order (the same on every process),
    e.g. to train a tokenizer: a random-access split's ``captions`` (all of an image's, in
    turn), else those of the first records of its stream. A stream's records are read whole
    (their images too, encoded) but not decoded.
    """
    if split.random_access:
        return captions_of(split)[0][:count]
    texts = []
    records = split.stream(0, 1, drop_remainder=False).map(split.decode_encoded)
    for example in records.as_numpy_iterator():
        found = example["caption"] if "caption" in example else example["captions"]
        texts += [t.decode() for t in np.atleast_1d(found)]
        if len(texts) >= count:
            break
    return texts[:count]
