"""The sentencepiece tokenizer: reproducible training, padding and truncation, round trips,
clear errors, and a run's tokenizer trained once and then reused."""

import hashlib
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import sentencepiece as spm

from cl_jax.data import tokenizer as tok
from cl_jax.errors import ConfigError, DataError, UserError

SYLLABLES = ("ka", "to", "ri", "mel", "sun", "dor", "pe", "la", "vin", "ost", "ba", "qui", "zen",
             "fa", "ru", "ne", "shi", "gol", "tra", "em")
VOCAB = 150


def corpus(n=300, seed=0):
    """``n`` short captions over 300 made-up words."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
             for _ in range(300)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(2, 9))) for _ in range(n)]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tok.train_sentencepiece(corpus(), VOCAB, tmp_path_factory.mktemp("spm") / "t.model")


TRAIN_ELSEWHERE = """
import hashlib, importlib.util, sys
spec = importlib.util.spec_from_file_location("tokenizer", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert "tensorflow" not in sys.modules
texts = open(sys.argv[2]).read().split("\\n")
print(hashlib.sha256(module.train_model_proto(texts, int(sys.argv[3]))).hexdigest())
"""


def test_training_is_deterministic(tmp_path, model_path):
    texts = corpus()
    # A prefix in another folder, then a fresh process (which imports no TensorFlow).
    again = tok.train_sentencepiece(texts, VOCAB, tmp_path / "other" / "prefix")
    assert again == str(tmp_path / "other" / "prefix.model")
    data = open(model_path, "rb").read()
    assert open(again, "rb").read() == data
    (tmp_path / "texts.txt").write_text("\n".join(texts))
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_ELSEWHERE, tok.__file__, str(tmp_path / "texts.txt"),
         str(VOCAB)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == hashlib.sha256(data).hexdigest()
    a, b = tok.Tokenizer.load(model_path), tok.Tokenizer.load(again)
    np.testing.assert_array_equal(a.encode(texts, 12), b.encode(texts, 12))
    assert (a.vocab_size, a.pad_id, a.unk_id, a.bos_id, a.eos_id) == (VOCAB, 0, 1, 2, 3)
    assert not [f for f in os.listdir(tmp_path / "other") if f.startswith(".tmp")]


def test_encode_pads_and_truncates_keeping_eos(model_path):
    tokenizer = tok.Tokenizer.load(model_path)
    texts = corpus(40, seed=1) + [""]
    pieces = spm.SentencePieceProcessor(model_file=model_path).encode(texts)
    assert max(map(len, pieces)) > 8 > min(map(len, pieces))  # some texts get truncated
    for max_len, bos, eos in ((8, False, True), (8, True, True), (6, True, False), (30, 0, 1)):
        expected = np.zeros((len(texts), max_len), np.int64)
        for row, ids in zip(expected, pieces, strict=True):
            ids = [2] * bos + ids[:max_len - bos - eos] + [3] * eos
            row[:len(ids)] = ids
        out = tokenizer.encode(texts, max_len, add_bos=bos, add_eos=eos)
        assert out.dtype == np.int32 and out.shape == (len(texts), max_len)
        np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(tokenizer.encode(texts[3], 8), tokenizer.encode(texts[3:4], 8))
    np.testing.assert_array_equal(tokenizer.encode([t.encode() for t in texts], 8),
                                  tokenizer.encode(texts, 8))
    with pytest.raises(ValueError, match="max_len"):
        tokenizer.encode(texts, 2, add_bos=True)


def test_decode_inverts_encode(model_path):
    tokenizer = tok.Tokenizer.load(model_path)
    texts = corpus(20, seed=2) + ["ka to ri", "ten melsun foods"]  # new words, known letters
    ids = tokenizer.encode(texts, 40, add_bos=True)
    assert tokenizer.decode(ids) == texts
    assert tokenizer.decode(ids[-1]) == texts[-1]
    assert tokenizer.decode(ids[-1].tolist()) == texts[-1]
    assert tokenizer.unk_id in tokenizer.encode("wax", 8)  # no "w" in the corpus


def test_unreadable_model_files_give_clear_errors(tmp_path):
    for name, data in (("garbage.model", b"not a model"), ("empty.model", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match=f"{name} is not a sentencepiece model"):
            tok.Tokenizer.load(tmp_path / name)
    with pytest.raises(UserError, match="missing.model: No such file"):
        tok.Tokenizer.load(tmp_path / "missing.model")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus()), vocab_size=VOCAB,
                                   model_prefix=str(tmp_path / "nopad"), minloglevel=2)
    with pytest.raises(UserError, match="lacks a pad"):
        tok.Tokenizer.load(tmp_path / "nopad.model")  # sentencepiece's default: no pad piece


def test_training_errors_say_what_to_change():
    with pytest.raises(UserError, match=r"cannot have 5000 pieces.* at most \d+ from these 300"):
        tok.train_model_proto(corpus(), 5000)
    with pytest.raises(UserError, match="Raise the vocabulary size"):
        tok.train_model_proto(corpus(), 10)
    with pytest.raises(DataError, match="No text"):
        tok.train_model_proto(["", " "], VOCAB)
    with pytest.raises(ConfigError, match="model_type"):
        tok.train_model_proto(corpus(), VOCAB, model_type="wordpiece")
    bpe = tok.Tokenizer.from_bytes(tok.train_model_proto(corpus(), 200, model_type="bpe"))
    assert bpe.vocab_size == 200


def test_tokenizer_for_run_trains_once_then_reuses(tmp_path, model_path):
    def never():
        raise AssertionError("texts were loaded, so the tokenizer was trained again")

    # Another process (write=False) trains the same model in memory and writes nothing.
    other = tok.tokenizer_for_run(tmp_path, corpus(), VOCAB, write=False)
    assert not os.listdir(tmp_path)
    first = tok.tokenizer_for_run(tmp_path, corpus, VOCAB)
    path = tmp_path / tok.MODEL_FILE
    data, mtime = path.read_bytes(), os.stat(path).st_mtime_ns
    assert data == open(model_path, "rb").read()
    again = tok.tokenizer_for_run(tmp_path, never, VOCAB)
    assert again.path == str(path)
    assert path.read_bytes() == data and os.stat(path).st_mtime_ns == mtime
    texts = corpus(30, seed=3)
    for t in (other, again):
        np.testing.assert_array_equal(t.encode(texts, 10), first.encode(texts, 10))
    given = tok.tokenizer_for_run(tmp_path / "new", never, 0, model_file=model_path)
    assert given.path == str(model_path) and not (tmp_path / "new").exists()
    with pytest.raises(ConfigError, match=f"has {VOCAB} pieces.*size is 120"):
        tok.tokenizer_for_run(tmp_path, never, 120)
