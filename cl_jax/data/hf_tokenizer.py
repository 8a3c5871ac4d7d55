"""A pretrained BERT / RoBERTa tokenizer from a local Hugging Face directory, as a cl_jax
``Tokenizer`` (``encode``, ``decode``, ``vocab_size``, ``pad_id``, ``bos_id``, ``eos_id``).

Backed by Hugging Face's ``tokenizers`` library (Rust; no PyTorch, no ``transformers``). The
directory's ``tokenizer.json`` when it has one; otherwise the tokenizer is rebuilt from the
vocabulary files as transformers' ``BertTokenizer`` / ``RobertaTokenizer`` build it:

- ``bert``: WordPiece (Wu et al. 2016) over ``vocab.txt`` (one piece a line, its id the line
  number), after BERT's normaliser (``do_lower_case``, ``strip_accents`` and
  ``tokenize_chinese_chars`` from ``tokenizer_config.json``; lower-casing by default) and
  whitespace-and-punctuation pre-tokeniser.
- ``roberta``: byte-level BPE (Sennrich et al. 2016; Radford et al. 2019's GPT-2 byte
  alphabet) over ``vocab.json`` and ``merges.txt``, ``add_prefix_space`` from
  ``tokenizer_config.json`` (default off).

BOS and EOS are the classifier and separator tokens (``[CLS]`` / ``[SEP]``, ``<s>`` /
``</s>``), and the pad id is the pad token's, all named by ``tokenizer_config.json`` or
``special_tokens_map.json`` if present. ``encode(texts, max_len, add_bos=True)`` gives
transformers' ``tokenizer(texts, padding="max_length", truncation=True, max_length=max_len)``
ids: ``[CLS] pieces [SEP] [PAD] ...``, a long text losing its last pieces, never [CLS] or
[SEP].
"""

import json
import os

import numpy as np
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as RustTokenizer

from cl_jax.errors import DataError

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILES = {"bert": ("vocab.txt",), "roberta": ("vocab.json", "merges.txt")}
SPECIAL_TOKENS = {
    "bert": {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
             "unk_token": "[UNK]", "mask_token": "[MASK]"},
    "roberta": {"cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>",
                "unk_token": "<unk>", "mask_token": "<mask>"},
}
REQUIRED = ("cls_token", "sep_token", "pad_token")
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")


def _as_str(text):
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def _token_text(value):
    """A special token as tokenizer configs write it: a string or ``{"content": ...}``."""
    return value["content"] if isinstance(value, dict) else value


def read_tokenizer_config(directory):
    """``special_tokens_map.json`` updated with ``tokenizer_config.json`` (each if present)."""
    config = {}
    for name in reversed(CONFIG_FILES):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                config.update(json.load(f))
    return config


def _wordpiece(directory, config, unk_token):
    """transformers' ``BertTokenizer`` pipeline over ``vocab.txt``."""
    vocab = models.WordPiece.read_file(os.path.join(directory, "vocab.txt"))
    tokenizer = RustTokenizer(models.WordPiece(vocab, unk_token=unk_token))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"), lowercase=config.get("do_lower_case", True))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _byte_level_bpe(directory, config):
    """transformers' ``RobertaTokenizer`` pipeline over ``vocab.json`` and ``merges.txt``."""
    vocab, merges = models.BPE.read_file(os.path.join(directory, "vocab.json"),
                                         os.path.join(directory, "merges.txt"))
    tokenizer = RustTokenizer(models.BPE(vocab, merges, continuing_subword_prefix="",
                                         end_of_word_suffix="", fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=config.get("add_prefix_space", False))
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


class HFTokenizer:
    """Texts <-> fixed-length int32 id arrays, with a Hugging Face ``tokenizers`` tokenizer.

    ``special``: role (``cls_token``, ``sep_token``, ``pad_token``, which must be in the
    vocabulary, and optionally ``unk_token``, ``mask_token``) -> token text.
    """

    def __init__(self, tokenizer, special, path="<in memory>"):
        self._tok = tokenizer
        self._tok.no_truncation()
        self._tok.no_padding()
        self.path = str(path)
        self._ids = {}
        for role, token in special.items():
            token_id = tokenizer.token_to_id(token)
            if token_id is None and role in REQUIRED:
                raise DataError(f"The tokenizer in {self.path} has no {role} {token!r} in its "
                                "vocabulary; name the right token in its tokenizer_config.json.")
            self._ids[role] = token_id

    @classmethod
    def from_directory(cls, directory, model_type):
        """The tokenizer of a Hugging Face model directory of ``model_type`` (``bert`` or
        ``roberta``): its ``tokenizer.json``, else its vocabulary files (``VOCAB_FILES``)."""
        directory = os.fspath(directory)
        if model_type not in VOCAB_FILES:
            raise DataError(f"No tokenizer for model_type {model_type!r} (in {directory}); "
                            f"supported: {', '.join(VOCAB_FILES)}.")
        config = read_tokenizer_config(directory)
        special = {role: _token_text(config.get(role, token))
                   for role, token in SPECIAL_TOKENS[model_type].items()}
        path = os.path.join(directory, TOKENIZER_FILE)
        if os.path.exists(path):
            return cls(RustTokenizer.from_file(path), special, path)
        files = VOCAB_FILES[model_type]
        missing = [f for f in files if not os.path.exists(os.path.join(directory, f))]
        if missing:
            raise DataError(f"The {model_type} model directory {directory} has no tokenizer: "
                            f"neither {TOKENIZER_FILE} nor {' and '.join(missing)}. It must "
                            f"contain {TOKENIZER_FILE}, or {' and '.join(files)} (what "
                            "save_pretrained writes for the model's tokenizer).")
        if model_type == "bert":
            tokenizer = _wordpiece(directory, config, special["unk_token"])
        else:
            tokenizer = _byte_level_bpe(directory, config)
        tokenizer.add_special_tokens([
            AddedToken(token, special=True, normalized=False, lstrip=role == "mask_token"
                       and model_type == "roberta")
            for role, token in special.items() if tokenizer.token_to_id(token) is not None])
        return cls(tokenizer, special, os.path.join(directory, files[0]))

    @property
    def vocab_size(self):
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def pad_id(self):
        return self._ids["pad_token"]

    @property
    def unk_id(self):
        return self._ids["unk_token"]

    @property
    def bos_id(self):
        return self._ids["cls_token"]

    @property
    def eos_id(self):
        return self._ids["sep_token"]

    def encode(self, texts, max_len, add_bos=False, add_eos=True):
        """``[bos] pieces [eos] pad ...`` for each text: int32 (len(texts), max_len).

        A text too long for ``max_len`` loses its last pieces, never its BOS or EOS. ``texts``:
        strings or UTF-8 bytes (one string counts as a list of one). BERT and RoBERTa expect
        ``add_bos=True`` (their [CLS] / <s> first).
        """
        if isinstance(texts, str | bytes):
            texts = [texts]
        room = max_len - int(add_bos) - int(add_eos)
        if room < 1:
            raise ValueError(f"HFTokenizer.encode: max_len {max_len} leaves no room for text "
                             "besides the BOS / EOS tokens.")
        encodings = self._tok.encode_batch([_as_str(t) for t in texts], add_special_tokens=False)
        out = np.full((len(encodings), max_len), self.pad_id, np.int32)
        for row, encoding in zip(out, encodings, strict=True):
            ids = [self.bos_id] * add_bos + encoding.ids[:room] + [self.eos_id] * add_eos
            row[:len(ids)] = ids
        return out

    def piece(self, token_id):
        """The vocabulary entry of one id (WordPiece marks a word's continuation with "##",
        byte-level BPE a word's start with "Ġ")."""
        return self._tok.id_to_token(int(token_id))

    def decode(self, ids):
        """The text of one row of ids (a string), or of each row of a 2-D array (a list);
        special tokens (padding, BOS, EOS, ...) are dropped."""
        ids = np.asarray(ids)
        texts = self._tok.decode_batch(np.atleast_2d(ids).tolist(), skip_special_tokens=True)
        return texts[0] if ids.ndim == 1 else texts
