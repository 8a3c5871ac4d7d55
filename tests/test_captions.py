"""Image-text sources (cl_jax.data.captions): caption TSVs, webdataset shards, COCO captions."""

import io
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from cl_jax.data import captions, sources, tokenizer
from cl_jax.data.augment import ViewAugment
from cl_jax.data.pipeline import train_dataset
from cl_jax.errors import DataError

RNG = np.random.RandomState(0)
JPEG_TOLERANCE = 3  # a solid colour survives JPEG to within a few levels


def solid(i, size=(6, 7)):
    """Image ``i``'s colour, distinct for i < 25, encoded losslessly enough by JPEG."""
    return np.broadcast_to(np.array([10 * i, 250 - 10 * i, 5 * i], np.uint8), (*size, 3))


def encoded_image(i, png):
    """(bytes, pixels) of image ``i``: random pixels as PNG, a solid colour as JPEG."""
    if png:
        pixels = RNG.randint(0, 256, (5, 4, 3)).astype(np.uint8)
        return tf.io.encode_png(pixels).numpy(), pixels
    pixels = solid(i)
    return tf.io.encode_jpeg(pixels, quality=100).numpy(), pixels


def assert_image(image, pixels, png):
    image = np.asarray(image).astype(int)
    assert image.shape == pixels.shape
    np.testing.assert_allclose(image, pixels, atol=0 if png else JPEG_TOLERANCE)


def data_config(**fields):
    from cl_jax import config_lib

    c = config_lib.base_config().data
    c.update(channels=3, **fields)
    return c


# --- caption TSV --------------------------------------------------------------------------


def write_tsv(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(fields) + "\n" for fields in lines), encoding="utf-8")
    return path


def test_csv_split_reads_images_and_captions(tmp_path):
    images, expected = tmp_path / "images", []
    images.mkdir()
    texts = ["a red square", 'a "quoted" dog', "ünïcödé caption", "a cat on a mat"]
    lines = [["id", "title", "filepath"]]
    for i, text in enumerate(texts):
        png = i % 2 == 0
        data, pixels = encoded_image(i, png)
        name = f"{i}.{'png' if png else 'jpg'}"
        (images / name).write_bytes(data)
        path = str(images / name) if i < 2 else f"../images/{name}"  # absolute, relative
        lines.append([str(i), text, path])
        expected.append((data, pixels, png))
    lines[2][1] = '"a ""quoted"" dog"'  # a quoted field, as csv writes one
    tsv = write_tsv(tmp_path / "lists" / "train.tsv", lines)
    split = captions.csv_split(str(tsv))
    assert split.random_access and split.num_examples == 4 and split.num_classes == 0
    assert split.captions == tuple(texts)
    for i, (data, pixels, png) in enumerate(expected):
        example = split.read(tf.constant(i, tf.int64))
        assert_image(example["image"], pixels, png)
        assert int(example["label"]) == -1
        assert split.read_encoded(tf.constant(i, tf.int64))["encoded"].numpy() == data
    assert split.describe(3) == str(tmp_path / "lists" / "../images/3.jpg")
    gray = captions.csv_split(str(tsv), channels=1)
    assert gray.read(tf.constant(1, tf.int64))["image"].shape == (6, 7, 1)

    c = data_config(source="csv", csv_path=str(tsv))
    assert sources.load_split(c, "train").captions == tuple(texts)
    assert sources.load_split(c, "eval_train") is None
    assert sources.load_split(c, "eval_test") is None  # no eval_csv_path
    c.eval_csv_path = str(tsv)
    assert sources.load_split(c, "eval_test").num_examples == 4


def test_csv_split_errors_say_what_to_fix(tmp_path):
    (tmp_path / "a.png").write_bytes(encoded_image(0, png=True)[0])
    with pytest.raises(DataError, match=r"does not exist; set --config.data.csv_path"):
        captions.csv_split(str(tmp_path / "nothing.tsv"))
    bad_header = write_tsv(tmp_path / "header.tsv", [["path", "text"], ["a.png", "x"]])
    with pytest.raises(DataError, match=r"columns 'path', 'text'.*no 'filepath' or 'title'.*"
                                        r"csv_image_column=<column>.*csv_caption_column="):
        captions.csv_split(str(bad_header))
    assert captions.csv_split(str(bad_header), "path", "text").captions == ("x",)
    empty = write_tsv(tmp_path / "empty.tsv",
                      [["filepath", "title"], ["a.png", "one"], ["a.png", "two"], ["a.png", " "]])
    with pytest.raises(DataError, match=r"Row 3 of .*empty.tsv \(line 4\) has an empty caption"):
        captions.csv_split(str(empty))
    missing = write_tsv(tmp_path / "missing.tsv", [["filepath", "title"], ["a.png", "a"],
                                                   ["b.png", "b"], ["c.png", "c"]])
    with pytest.raises(DataError, match=r"2 of the 3 images listed .* do not exist, e\.g\. "
                                        r".*b\.png, .*c\.png"):
        captions.csv_split(str(missing))


# --- webdataset shards --------------------------------------------------------------------


def add_member(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder, sizes, incomplete=True):
    """Tar shards of ``sizes`` samples (PNG and JPEG, .txt, some .json), img2dataset-style,
    plus in shard 0 a sample without caption and one with an empty caption; returns
    {key: (pixels, png, caption)}."""
    folder.mkdir(parents=True, exist_ok=True)
    samples, k = {}, 0
    for s, size in enumerate(sizes):
        with tarfile.open(folder / f"{s:03d}.tar", "w") as tar:
            for _ in range(size):
                key, png = f"{s:03d}{k:04d}", k % 2 == 0
                data, pixels = encoded_image(k, png)
                caption = f"sample {k} caption"
                add_member(tar, f"{key}.{'png' if png else 'jpg'}", data)
                if k % 3 == 0:
                    add_member(tar, f"{key}.json", b'{"width": 4}')
                add_member(tar, f"{key}.txt", f"{caption}\n".encode())
                samples[key] = (pixels, png, caption)
                k += 1
                if s == 0 and incomplete and k == 2:
                    add_member(tar, "nocaption.jpg", encoded_image(0, False)[0])
                    add_member(tar, "emptycaption.png", encoded_image(0, True)[0])
                    add_member(tar, "emptycaption.txt", b"")
    return samples


def read_stream(split, process_index, process_count, drop_remainder=True):
    records = split.stream(process_index, process_count, drop_remainder).map(split.decode)
    return list(records.as_numpy_iterator())


def test_webdataset_processes_read_disjoint_shards_covering_all(tmp_path, caplog):
    samples = write_shards(tmp_path / "shards", [5, 5])
    split = captions.webdataset_split(str(tmp_path / "shards" / "{000..001}.tar"))
    assert "2 samples of" in caplog.text and "are skipped" in caplog.text
    assert not split.random_access and split.num_examples == 10 and split.index_size == 10
    assert split.captions == () and split.num_classes == 0
    got = [read_stream(split, p, 2) for p in (0, 1)]
    for process, records in enumerate(got):  # process p: shard p, all of it
        assert sorted(r["index"] for r in records) == list(range(5 * process, 5 * process + 5))
    rows = {}
    for r in got[0] + got[1]:
        key = next(k for k, (_, _, c) in samples.items() if c.encode() == r["caption"])
        assert key.startswith(f"{r['index'] // 5:03d}")
        pixels, png, _ = samples[key]
        assert_image(r["image"], pixels, png)
        assert r["label"] == -1
        rows[r["index"]] = key
    assert sorted(rows.values()) == sorted(samples)
    # Three processes over 10 rows: shares of 3 (drop_remainder) or 3, 3, 4 (every row).
    dropped = [sorted(r["index"] for r in read_stream(split, p, 3)) for p in range(3)]
    assert dropped == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    every = [sorted(r["index"] for r in read_stream(split, p, 3, False)) for p in range(3)]
    assert every == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    with pytest.raises(DataError, match="10 samples, fewer than the 11 processes"):
        split.stream(0, 11, True)


def test_webdataset_split_trains_through_the_pipeline(tmp_path):
    """One epoch of 10 rows: every sample once, with its row as index; captions first."""
    write_shards(tmp_path / "shards", [6, 4], incomplete=False)
    split = sources.load_split(data_config(source="webdataset",
                                           shards=str(tmp_path / "shards" / "*.tar")), "train")
    views = [ViewAugment(size=4)]
    ds = train_dataset(split, views, seed=0, global_batch=5, mean=(0.5,) * 3, std=(0.5,) * 3)
    index = np.concatenate([b["index"] for b in ds.take(2).as_numpy_iterator()])
    assert sorted(index) == list(range(10))
    first = captions.first_captions(split, 3)  # shards interleaved: 0, 1, 0
    assert first == ["sample 0 caption", "sample 6 caption", "sample 1 caption"]


def test_shard_patterns(tmp_path):
    expand = captions.expand_braces
    assert expand("d/{08..10}.tar") == ["d/08.tar", "d/09.tar", "d/10.tar"]
    assert expand("{8..10}") == ["8", "9", "10"]
    assert expand("{1..003}") == ["001", "002", "003"]
    assert expand("{2..0}") == ["2", "1", "0"]
    assert expand("{0..1}/{00..01}.tar") == ["0/00.tar", "0/01.tar", "1/00.tar", "1/01.tar"]
    assert expand("plain.tar") == ["plain.tar"]
    write_shards(tmp_path, [1, 1, 1], incomplete=False)
    assert captions.shard_paths(str(tmp_path / "{000..002}.tar")) == [
        str(tmp_path / f"{i:03d}.tar") for i in range(3)]
    assert captions.shard_paths(str(tmp_path / "00[02].tar")) == [
        str(tmp_path / "000.tar"), str(tmp_path / "002.tar")]
    with pytest.raises(DataError, match=r"No tar shards match '.*/\{100\.\.199\}\.tar'"):
        captions.webdataset_split(str(tmp_path / "{100..199}.tar"))
    with pytest.raises(DataError, match=r"No tar shards match"):
        captions.webdataset_split(str(tmp_path / "*.tgz"))
    with pytest.raises(DataError, match=r"2 of the shards .* do not exist, e\.g\. .*003\.tar"):
        captions.shard_paths(str(tmp_path / "{000..004}.tar"))


# --- COCO captions ------------------------------------------------------------------------


class ClJaxTinyCoco(tfds.core.GeneratorBasedBuilder):
    """coco_captions' features (a JPEG, its file name, a Sequence of captions), 6 + 3 images:
    image i is solid(i) with 4 or 5 captions 'image i caption j'."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(encoding_format="jpeg"),
            "image/filename": tfds.features.Text(),
            "image/id": np.int64,
            "captions": tfds.features.Sequence({"text": np.str_, "id": np.int64})}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 6), "test": self._generate_examples(6, 9)}

    def _generate_examples(self, first, stop):
        for i in range(first, stop):
            yield i, {"image": np.array(solid(i)), "image/filename": f"{i:012d}.jpg",
                      "image/id": i, "captions": [{"text": f"image {i} caption {j}", "id": j}
                                                  for j in range(4 + i % 2)]}


def image_number(image):
    """The i of an image solid(i)."""
    i = int(round(float(np.asarray(image)[..., 0].mean()) / 10))
    assert_image(image, solid(i), png=False)
    return i


def expected_captions(i):
    return tuple(f"image {i} caption {j}" for j in range(4 + i % 2))


def test_coco_split_from_a_builder_with_its_features(tmp_path):
    tfds.builder("cl_jax_tiny_coco", data_dir=str(tmp_path)).download_and_prepare()
    split = captions.coco_split("train", str(tmp_path), name="cl_jax_tiny_coco")
    assert split.random_access and split.num_examples == 6 and split.num_classes == 0
    numbers = []
    for index in range(6):
        example = split.read(tf.constant(index, tf.int64))
        numbers.append(image_number(example["image"]))
        assert split.captions[index] == expected_captions(numbers[-1])
        assert int(example["label"]) == -1
        assert split.describe(index).endswith(f"{numbers[-1]:012d}.jpg")
    assert sorted(numbers) == list(range(6))
    flat = captions.first_captions(split, 7)
    assert flat == list(split.captions[0] + split.captions[1])[:7]

    streamed = captions.coco_split("test", str(tmp_path), in_memory=False,
                                   name="cl_jax_tiny_coco")
    assert not streamed.random_access and streamed.num_examples == 3
    assert streamed.index_size == 3
    records = read_stream(streamed, 0, 1, drop_remainder=False)
    assert sorted(r["index"] for r in records) == [0, 1, 2]
    for r in records:
        assert tuple(t.decode() for t in r["captions"]) == expected_captions(
            image_number(r["image"]))
    first = [t.decode() for r in records for t in r["captions"]][:6]
    assert captions.first_captions(streamed, 6) == first


def test_coco_split_reads_the_features_coco_captions_has(tmp_path):
    builder = tfds.builder("coco_captions", data_dir=str(tmp_path))
    captions.COCO_DECODERS.extract_features(builder.info.features)  # raises on a mismatch
    with pytest.raises(DataError, match="tfds build coco_captions"):
        sources.load_split(data_config(source="coco", data_dir=str(tmp_path)), "train")


# --- tokenising captions in tf.data -------------------------------------------------------

CORPUS = [f"a {c} {a} {w} the {p}" for c in ("red", "blue", "green", "small", "large")
          for a in ("cat", "dog", "bird", "car", "horse", "jumping fox")
          for w in ("on", "near", "by") for p in ("mat", "road", "grass", "quiet lake")]
TEXTS = (["", " ", "a cat", "the dog on the grass", "A RED CAR!", "über naïve café",
          "  leading and trailing  ", "multiple   spaces\tand\ttabs", "日本語のキャプション",
          "emoji 🐱 in text", "x" * 40, "a red cat on the mat " * 3, "0123456789",
          "bird, car; dog: cat.", "line\nbreak"]
         + CORPUS[::20] + [" ".join(CORPUS[i:i + 3]) for i in range(0, 300, 100)])


def test_caption_tokenizer_op_equals_tokenizer_encode():
    pytest.importorskip("tensorflow_text")
    tok = tokenizer.Tokenizer.from_bytes(tokenizer.train_model_proto(CORPUS, vocab_size=32))
    max_len = 16
    expected = tok.encode(TEXTS, max_len)
    cut = expected[:, -1] == tok.eos_id  # truncated texts, the EOS kept
    assert 5 < cut.sum() < len(TEXTS) - 5 and (expected == tok.unk_id).any()
    op = captions.caption_tokenizer_op(tok, max_len)
    np.testing.assert_array_equal(op(tf.constant(TEXTS)).numpy(), expected)
    mapped = tf.data.Dataset.from_tensor_slices(TEXTS).map(op)  # in a graph, one at a time
    np.testing.assert_array_equal(np.stack(list(mapped.as_numpy_iterator())), expected)
    assert tokenizer.Tokenizer.from_bytes(tok.model_bytes).encode(TEXTS, 5).tolist() == \
        tok.encode(TEXTS, 5).tolist()
