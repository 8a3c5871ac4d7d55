"""A SentencePiece tokenizer (Kudo & Richardson 2018): trained once per run, reproducibly.

``train_sentencepiece`` trains a unigram language-model tokenizer (Kudo 2018, "Subword
Regularization") on in-memory strings. Unigram is the default, rather than BPE (Sennrich et
al. 2016, which CLIP uses at the byte level), because it is sentencepiece's and T5's default
and matches or beats BPE as an encoder's tokenizer (Bostrom & Durrett 2020, "Byte Pair
Encoding is Suboptimal for Language Model Pretraining"); ``model_type="bpe"`` is available.
Training is deterministic: one thread, input order kept (``shuffle_input_sentence=False``),
a fixed random seed, the model returned in memory (so no path is recorded in it); the same
texts and settings give a byte-identical ``.model`` file on any machine and any run.

Special ids: pad 0, unk 1, bos 2 (``<s>``), eos 3 (``</s>``). ``Tokenizer.encode`` pads with
0 at the end and, when a text is truncated, keeps the EOS as the last token, so the last
non-pad position of a row is its end-of-text token (``cl_jax.models.text``'s ``eos``
pooling). The vocabulary size is exact: a corpus too small for it is a clear error.

Needs only sentencepiece and NumPy, not TensorFlow (though ``cl_jax.data``'s package
``__init__`` imports TensorFlow).
"""

import contextlib
import io
import os
import re
import tempfile

import numpy as np
import sentencepiece as spm

from cl_jax.errors import ConfigError, DataError, UserError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
MODEL_FILE = "tokenizer.model"
MODEL_TYPES = ("unigram", "bpe")


def _as_str(text):
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def train_model_proto(texts, vocab_size, *, model_type="unigram", character_coverage=1.0,
                      byte_fallback=False, normalization="nmt_nfkc", max_sentences=0, seed=0):
    """Trains a sentencepiece model on ``texts`` (strings or UTF-8 bytes); its bytes.

    ``character_coverage``: the share of characters the vocabulary must cover (the rest map to
    ``<unk>``; 1.0 keeps every character). ``byte_fallback=True`` spells unknown characters as
    UTF-8 bytes instead of ``<unk>``, at the cost of 256 byte pieces (so only for vocabularies
    well above 256, e.g. the thousands of a real caption corpus). ``normalization``: a
    sentencepiece rule (``nmt_nfkc``, ``nmt_nfkc_cf`` to also lower-case, ``identity``).
    ``max_sentences``: train on the first so many texts only (0: all).
    """
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"Tokenizer model_type must be one of {MODEL_TYPES}, got "
                          f"{model_type!r}.")
    texts = [_as_str(t) for t in texts]
    if not any(t.strip() for t in texts):
        raise DataError(f"No text to train the tokenizer on ({len(texts)} empty texts); check "
                        "that the data set's captions / sentences are loaded.")
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=character_coverage,
            byte_fallback=byte_fallback, normalization_rule_name=normalization,
            input_sentence_size=max_sentences, shuffle_input_sentence=False, num_threads=1,
            hard_vocab_limit=True, pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            minloglevel=2)
    except RuntimeError as err:
        raise _training_error(err, vocab_size, len(texts)) from err
    return model.getvalue()


def _training_error(err, vocab_size, num_texts):
    """sentencepiece's check failures, as what to change."""
    message = str(err)
    if "Vocabulary size too high" in message:
        most = re.search(r"<= (\d+)", message)
        bound = f"at most {most.group(1)}" if most else "fewer"
        return UserError(f"The tokenizer cannot have {vocab_size} pieces: sentencepiece can "
                         f"make {bound} from these {num_texts} texts. Lower the tokenizer's "
                         "vocabulary size, or train it on more text.")
    if "smaller than required_chars" in message:
        return UserError(f"A tokenizer vocabulary of {vocab_size} is smaller than the "
                         f"characters and special pieces these texts need ({message}). Raise "
                         "the vocabulary size, or lower character_coverage (e.g. 0.9995) so "
                         "rare characters become <unk>.")
    return UserError(f"Training the sentencepiece tokenizer failed: {message}")


def train_sentencepiece(texts, vocab_size, model_prefix_or_path, **options):
    """Trains a tokenizer on ``texts`` and writes it atomically; the ``.model`` file's path.

    ``model_prefix_or_path``: a path ending in ``.model``, or a prefix to which ``.model`` is
    appended (sentencepiece's convention). ``options``: those of ``train_model_proto``.
    """
    path = os.fspath(model_prefix_or_path)
    if not path.endswith(".model"):
        path += ".model"
    write_atomically(path, train_model_proto(texts, vocab_size, **options))
    return path


def write_atomically(path, data):
    """Writes ``data`` to a temporary file next to ``path``, then renames it to ``path``: a
    reader never sees a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".model")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


class Tokenizer:
    """Texts <-> fixed-length int32 id arrays, with a sentencepiece model."""

    def __init__(self, processor, path="<in memory>"):
        self._sp = processor
        self.path = str(path)

    @classmethod
    def load(cls, path):
        """The tokenizer in the sentencepiece ``.model`` file ``path``."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise UserError(f"Cannot read the tokenizer model {path}: {err.strerror}. Give the "
                            "path of a sentencepiece .model file.") from err
        return cls.from_bytes(data, path)

    @classmethod
    def from_bytes(cls, model_proto, path="<in memory>"):
        """The tokenizer of a serialised sentencepiece model (the bytes of a ``.model`` file)."""
        fix = (f"Replace {path} with a .model file written by sentencepiece (for a run's own "
               f"{MODEL_FILE}: delete it, and the run trains a new one).")
        if not model_proto:
            raise UserError(f"{path} is not a sentencepiece model (it is empty). {fix}")
        try:
            sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except RuntimeError as err:
            raise UserError(f"{path} is not a sentencepiece model ({err}). {fix}") from err
        if min(sp.pad_id(), sp.bos_id(), sp.eos_id()) < 0:
            raise UserError(f"The tokenizer {path} lacks a pad, bos or eos piece (ids "
                            f"{sp.pad_id()}, {sp.bos_id()}, {sp.eos_id()}); train it with "
                            "cl_jax.data.tokenizer.train_sentencepiece, which defines all three.")
        return cls(sp, path)

    @property
    def model_bytes(self):
        """The serialised sentencepiece model (the bytes of its ``.model`` file)."""
        return self._sp.serialized_model_proto()

    @property
    def vocab_size(self):
        return self._sp.get_piece_size()

    @property
    def pad_id(self):
        return self._sp.pad_id()

    @property
    def unk_id(self):
        return self._sp.unk_id()

    @property
    def bos_id(self):
        return self._sp.bos_id()

    @property
    def eos_id(self):
        return self._sp.eos_id()

    def encode(self, texts, max_len, add_bos=False, add_eos=True):
        """``[bos] pieces [eos] pad ...`` for each text: int32 (len(texts), max_len).

        A text too long for ``max_len`` loses its last pieces, never its BOS or EOS. ``texts``:
        strings or UTF-8 bytes (one string counts as a list of one).
        """
        if isinstance(texts, str | bytes):
            texts = [texts]
        room = max_len - int(add_bos) - int(add_eos)
        if room < 1:
            raise ValueError(f"Tokenizer.encode: max_len {max_len} leaves no room for text "
                             "besides the BOS / EOS tokens.")
        pieces = self._sp.encode([_as_str(t) for t in texts], out_type=int)
        lengths = np.minimum([len(p) for p in pieces], room).astype(np.int64)
        flat = np.fromiter((i for p, n in zip(pieces, lengths, strict=True) for i in p[:n]),
                           np.int32, count=int(lengths.sum()))
        rows = np.repeat(np.arange(len(pieces)), lengths)
        starts = np.cumsum(lengths) - lengths
        cols = np.arange(flat.size) - np.repeat(starts, lengths) + int(add_bos)
        out = np.full((len(pieces), max_len), self.pad_id, np.int32)
        out[rows, cols] = flat
        if add_bos:
            out[:, 0] = self.bos_id
        if add_eos:
            out[np.arange(len(pieces)), lengths + int(add_bos)] = self.eos_id
        return out

    def piece(self, token_id):
        """The sentencepiece piece of one id ("▁" marks the start of a word)."""
        return self._sp.id_to_piece(int(token_id))

    def decode(self, ids):
        """The text of one row of ids (a string), or of each row of a 2-D array (a list);
        padding, BOS and EOS are dropped."""
        ids = np.asarray(ids)
        texts = self._sp.decode(np.atleast_2d(ids).tolist())  # control pieces decode to ""
        return texts[0] if ids.ndim == 1 else texts


def tokenizer_for_run(workdir, texts, vocab_size, model_file="", *, write=True, **options):
    """The run's tokenizer: ``model_file`` if given, else ``workdir/tokenizer.model`` if it
    exists (a resumed run), else one trained on ``texts`` and saved there.

    ``texts``: the training strings, or a function returning them, called only when a model
    must be trained. ``vocab_size`` must match a loaded model's (0: accept any). ``write``:
    whether this process saves the trained model; in a multi-host run pass
    ``jax.process_index() == 0``. The others train the same model in memory (training is
    deterministic), so no process waits for another, as long as every process is given the
    same ``texts``. ``options``: those of ``train_model_proto``.
    """
    path = os.path.join(os.fspath(workdir), MODEL_FILE)
    if model_file or os.path.exists(path):
        tokenizer = Tokenizer.load(model_file or path)
        if vocab_size and tokenizer.vocab_size != vocab_size:
            raise ConfigError(f"The tokenizer {tokenizer.path} has {tokenizer.vocab_size} "
                              f"pieces, but the configured vocabulary size is {vocab_size}. "
                              f"Set it to {tokenizer.vocab_size}, or (for a run's own "
                              f"{MODEL_FILE}) start a new workdir.")
        return tokenizer
    proto = train_model_proto(texts() if callable(texts) else texts, vocab_size, **options)
    if write:
        write_atomically(path, proto)
    return Tokenizer.from_bytes(proto, path)
