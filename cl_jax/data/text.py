"""Text splits: the data of the sentence-embedding methods (SimCSE, Sentence-BERT, ...).

A text split is a random-access ``Split`` whose ``texts`` are K columns of N sentences: an
example is one sentence of each column (K = 1: a sentence, unsupervised SimCSE; 2: a pair;
3: anchor, positive, hard negative). Labels (an NLI class, a lexicographer category) and
``scores`` (graded similarity) are optional. ``with_sentence_tokens`` encodes every sentence
once on the host; the split's examples are then
``{'sentences': int32 (K, L), 'label': int32, 'score': float32}`` and the host pipeline
(``cl_jax.data.pipeline.make_views``) passes them through, with the token-level
augmentations of ``cl_jax.data.text_augment`` drawn per (seed, epoch, index).

``load_text_split`` maps ``config.data`` to the split of one purpose:

- ``source="wordnet"``: the embedded WordNet 3.0 derivative (``cl_jax.data.wordnet``).
  Training splits ``glosses`` (unsupervised), ``gloss_example`` / ``synonyms`` (anchor,
  positive, sibling-synset hard negative), ``similarity_train`` (gloss pairs scored by their
  synsets' Wu-Palmer similarity); evaluation splits ``categories_train`` /
  ``categories_test`` (glosses labelled by lexicographer category, for kNN and linear
  probes), ``sts`` (the taxonomy similarity benchmark), ``definitions`` (gloss -> word).
  The synsets of ``categories_test``, ``sts`` and ``definitions`` are left out of every
  training split (``held_out_rows``): no evaluated gloss is trained on.
- ``source="lines"``: ``data.train_file``, one sentence per line (blank lines between
  documents); with ``data.text_chunk=C`` an example is C consecutive sentences of one
  document (Quick-Thoughts).
- ``source="pydoc"``: the prose of the Python reference manual CPython ships, as ordered
  text (``pydoc_sentences``), chunked like ``lines``.
- ``source="pairs"``: ``data.train_file``, a TSV of (sentence, paraphrase) pairs
  (``text_files.read_pairs``), e.g. back-translations made beforehand (CERT).
- ``source="nli"``: ``data.train_file``, an NLI TSV: triples (anchor, entailment, contradiction)
  with ``data.nli_form="triples"``, labelled pairs with ``"pairs"``.

The split named ``sts`` is the run's graded-similarity set: ``eval.sts_file`` (a TSV, the SICK
or STS-benchmark layouts) or ``eval.sts_tfds`` (``glue/stsb:validation``) when set, else the
source's own. The split named ``probe`` is ``eval.probe_file``'s labelled sentences (a
SentEval classification task), or None.
"""

import dataclasses
import re

import numpy as np
import tensorflow as tf

from cl_jax.data import text_files, wordnet
from cl_jax.data.sources import Split
from cl_jax.errors import ConfigError, DataError

TRAIN_SOURCES = ("wordnet", "pydoc", "lines", "pairs", "nli")
WORDNET_SPLITS = ("glosses", "gloss_example", "synonyms", "similarity_train",
                  "categories_train", "categories_test", "sts", "definitions")


def text_split(name, columns, labels=None, num_classes=0, scores=None, provenance=None):
    """A text split of ``columns`` (K sequences of N strings), labels (N,) int or None (-1),
    scores (N,) float or None. Its ``read`` gives labels and scores; tokens come from
    ``with_sentence_tokens``."""
    columns = tuple(tuple(str(t) for t in c) for c in columns)
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise ValueError(f"text split {name}: columns of {[len(c) for c in columns]} rows.")
    if n == 0:
        raise DataError(f"The text split {name} has no sentences.")
    label_table = tf.constant(np.full(n, -1, np.int32) if labels is None
                              else np.asarray(labels, np.int32))
    score_array = None if scores is None else np.asarray(scores, np.float32)
    score_table = tf.constant(np.zeros(n, np.float32) if score_array is None else score_array)

    def read(index):
        return {"label": tf.gather(label_table, index), "score": tf.gather(score_table, index)}

    return Split(name, n, num_classes, read=read, texts=columns, scores=score_array,
                 provenance=provenance)


def sentences_of(split, count=None):
    """Every sentence of a text split, column by column (the first ``count``), e.g. to train
    a tokenizer."""
    texts = [t for column in split.texts for t in column]
    return texts if count is None else texts[:count]


def with_sentence_tokens(split, tokenizer, max_len, add_bos=True):
    """``(split, truncated)``: the split whose examples carry ``sentences`` (K, L), every
    sentence encoded once (``[bos] pieces [eos] pad``), and how many sentences were cut to
    ``max_len``."""
    columns, truncated = [], 0
    for column in split.texts:  # one position more shows who does not fit
        longer = tokenizer.encode(list(column), max_len + 1, add_bos=add_bos)
        cut = np.flatnonzero(longer[:, -1] != tokenizer.pad_id)
        fitted = longer[:, :max_len]
        if len(cut):
            fitted[cut] = tokenizer.encode([column[i] for i in cut], max_len, add_bos=add_bos)
        columns.append(fitted)
        truncated += len(cut)
    tokens = tf.constant(np.stack(columns, axis=1))  # (N, K, L)
    read = split.read

    def read_with_tokens(index):
        return dict(read(index), sentences=tf.gather(tokens, index))

    return dataclasses.replace(split, read=read_with_tokens), truncated


def subset(rows, limit, seed):
    """``limit`` of ``rows`` drawn by ``seed``, in order; all of them if ``limit`` is 0 or
    not smaller."""
    if not limit or limit >= len(rows):
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))


def held_out_rows(wn, data_config):
    """The synsets of WordNet's evaluation splits (the test probe's, the similarity pairs',
    the definitions'): left out of every training split."""
    c = data_config
    return np.unique(np.concatenate([
        wordnet.category_split(wn, limit=c.text_eval_limit, seed=c.text_seed)[1].rows,
        wordnet.similarity_benchmark(wn, num_pairs=c.text_sts_pairs, seed=c.text_seed).rows
        .ravel(),
        wordnet.definition_word(wn, limit=c.text_eval_limit, seed=c.text_seed).rows]))


def wordnet_split(name, data_config):
    """A split of the embedded WordNet derivative (``WORDNET_SPLITS``)."""
    c = data_config
    wn = wordnet.load()
    seed, limit = c.text_seed, c.text_limit
    provenance = {"source": "WordNet 3.0 (cl_jax/data/wordnet30)", "split": name, "seed": seed,
                  "limit": limit}
    if name == "glosses":
        rows = subset(np.setdiff1d(wordnet.glosses(wn)[0], held_out_rows(wn, c)), limit, seed)
        return text_split("wordnet/glosses", [[wn.gloss[i] for i in rows.tolist()]],
                          provenance=provenance)
    if name in ("gloss_example", "synonyms"):
        sample = wordnet.gloss_example_pairs if name == "gloss_example" else \
            wordnet.synonym_pairs
        found = sample(wn, seed=seed)
        held = held_out_rows(wn, c)
        keep = subset(np.flatnonzero(~np.isin(found.rows, held)
                                     & ~np.isin(found.negative_rows, held)), limit, seed)
        columns = [[column[i] for i in keep.tolist()]
                   for column in (found.anchors, found.positives, found.negatives)]
        return text_split(f"wordnet/{name}", columns, provenance=provenance)
    if name in ("categories_train", "categories_test"):
        parts = wordnet.category_split(wn, limit=c.text_eval_limit, seed=seed)
        found = parts[name == "categories_test"]
        return text_split(f"wordnet/{name}", [found.texts], found.labels, len(wordnet.LEXNAMES))
    if name == "sts":
        found = wordnet.similarity_benchmark(wn, num_pairs=c.text_sts_pairs, seed=seed)
        return text_split("wordnet/sts (Wu-Palmer taxonomy proxy)", [found.first, found.second],
                          scores=found.scores)
    if name == "similarity_train":  # scored pairs of synsets no evaluation split has
        held = held_out_rows(wn, c)
        found = wordnet.similarity_benchmark(wn, num_pairs=limit or 20_000, seed=seed + 1)
        fresh = ~np.isin(found.rows, held).any(axis=1)
        pick = lambda texts: [t for t, keep in zip(texts, fresh, strict=True) if keep]
        return text_split("wordnet/similarity_train", [pick(found.first), pick(found.second)],
                          scores=found.scores[fresh], provenance=provenance)
    if name == "definitions":
        found = wordnet.definition_word(wn, limit=c.text_eval_limit, seed=seed)
        return text_split("wordnet/definitions", [found.queries, found.keys])
    raise DataError(f"WordNet has the splits {', '.join(WORDNET_SPLITS)}, not {name!r}.")


def pydoc_sentences():
    """The running English prose of the Python reference manual that every CPython ships
    (``pydoc_data.topics``, 79 topics): (sentences, document per sentence), one document a
    topic. Headings, grammar and code (indented paragraphs) are left out; a paragraph's
    lines are joined and split into sentences after ``.``, ``!`` or ``?``."""
    from pydoc_data import topics

    texts, documents = [], []
    for doc, name in enumerate(sorted(topics.topics)):
        for paragraph in topics.topics[name].split("\n\n"):
            lines = paragraph.split("\n")
            if not lines[0] or lines[0][0].isspace() or set(lines[-1]) <= set("*=-"):
                continue
            for sentence in _SENTENCE_END.split(" ".join(line.strip() for line in lines)):
                if len(sentence.split()) >= 3:
                    texts.append(sentence)
                    documents.append(doc)
    return tuple(texts), np.asarray(documents, np.int64)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"(])")


def consecutive_chunks(texts, documents, size):
    """K = ``size`` columns: example ``i`` is the ``size`` consecutive sentences of one
    document starting at a sentence ``i`` (every such window; they overlap)."""
    documents = np.asarray(documents)
    starts = np.flatnonzero(documents[:len(texts) - size + 1] == documents[size - 1:])
    if not len(starts):
        raise DataError(f"No {size} consecutive sentences of one document; lower "
                        "data.text_chunk or give longer documents.")
    return [[texts[i + k] for i in starts.tolist()] for k in range(size)]


def sts_split(config):
    """The run's graded-similarity split: ``eval.sts_file``, ``eval.sts_tfds``, or None."""
    e = config.eval
    if e.sts_file:
        found = text_files.read_sts_any(e.sts_file, e.sts_sick_set or None)
        return text_split(f"sts:{e.sts_file}", [found.sentence1, found.sentence2],
                          scores=found.scores,
                          provenance={"file": e.sts_file, "layout": found.layout,
                                      "skipped": found.skipped()})
    if e.sts_tfds:
        name, _, split = e.sts_tfds.partition(":")
        if name != "glue/stsb":
            raise ConfigError(f"eval.sts_tfds names {name!r}; the TFDS STS set is glue/stsb "
                              "(e.g. --config.eval.sts_tfds=glue/stsb:validation).")
        found = text_files.tfds_stsb(split or "validation", config.data.data_dir)
        return text_split(f"glue/stsb:{split or 'validation'}",
                          [found.sentence1, found.sentence2], scores=found.scores)
    return None


def load_text_split(config, purpose, name=None):
    """The text split for ``purpose`` ('train', 'eval_train', 'eval_test', 'eval_extra' with
    ``name``), or None; see the module docstring."""
    c = config.data
    split_name = name if purpose == "eval_extra" else c.get(f"{purpose}_split")
    if split_name == "sts":
        user = sts_split(config)
        if user is not None:
            return user
    if split_name == "probe":  # a labelled sentence file (eval.probe_file) or none
        if not config.eval.probe_file:
            return None
        found = text_files.read_labelled(config.eval.probe_file)
        return text_split(f"probe:{config.eval.probe_file}", [found.texts], found.labels,
                          len(found.classes), provenance={"file": config.eval.probe_file,
                                                          "skipped": found.skipped()})
    if c.source == "wordnet" or (purpose != "train" and split_name in WORDNET_SPLITS
                                 and c.text_eval_source == "wordnet"):
        return wordnet_split(split_name, c) if split_name else None
    if purpose != "train":
        return None
    if not c.train_file and c.source != "pydoc":
        raise ConfigError(f"data.source={c.source!r} trains on a file: set "
                          "--config.data.train_file=FILE.")
    if c.source == "pydoc":
        texts, documents = pydoc_sentences()
        return text_split("pydoc (Python reference manual)",
                          consecutive_chunks(texts, documents, c.text_chunk)
                          if c.text_chunk else [texts], provenance={"source": "pydoc_data"})
    if c.source == "lines":
        found = text_files.read_lines(c.train_file)
        columns = consecutive_chunks(found.texts, found.document, c.text_chunk) \
            if c.text_chunk else [found.texts]
        return text_split(f"lines:{c.train_file}", columns,
                          provenance={"file": c.train_file, "skipped": found.skipped()})
    if c.source == "pairs":
        found = text_files.read_pairs(c.train_file)
        return text_split(f"pairs:{c.train_file}", [found.sentence1, found.sentence2],
                          provenance={"file": c.train_file, "skipped": found.skipped()})
    if c.source == "nli":
        found = text_files.read_nli(c.train_file)
        provenance = {"file": c.train_file, "skipped": found.skipped()}
        if c.nli_form == "pairs":
            return text_split(f"nli-pairs:{c.train_file}", [found.sentence1, found.sentence2],
                              found.labels, 3, provenance=provenance)
        if c.nli_form != "triples":
            raise ConfigError(f"data.nli_form is {c.nli_form!r}; choose 'triples' (anchor, "
                              "positive, hard negative) or 'pairs' (labelled).")
        return text_split(f"nli:{c.train_file}", found.triples(), provenance=provenance)
    raise DataError(f"data.source must be one of {', '.join(TRAIN_SOURCES)} for a sentence "
                    f"method, got {c.source!r}.")
