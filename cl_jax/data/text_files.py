"""Readers of the text files that sentence-embedding methods train and are evaluated on.

- ``read_lines``: one sentence a line, blank lines between documents (Quick-Thoughts,
  unsupervised SimCSE).
- ``read_nli``: labelled sentence pairs (SBERT's softmax objective) and (anchor, positive, hard
  negative) triples (supervised SimCSE), from a file of either.
- ``read_sts``, ``read_sick``, ``read_stsb_csv`` and ``read_sts_any`` (which tells the three
  apart): sentence pairs with similarity scores, for STS evaluation.
- ``tfds_stsb``: the same from TFDS ``glue/stsb``.

Each returns a small frozen dataclass (texts as tuples of str, numbers as NumPy arrays) with
counts of the rows it skipped; its ``skipped()`` says them in words ("skipped 3 empty lines"),
for the run to print. A file that cannot be used raises one ``DataError`` that names the file
(and the line, where one is to blame) and says what to change.

Files are UTF-8, with or without a BOM, with any line endings. Fields are stripped of
surrounding whitespace. Tab-separated files are read with ``csv.QUOTE_NONE``, so quotes are text
(SNLI, MNLI and the STS benchmark never quote a field but have unbalanced quotes in
sentences); a ``.csv`` NLI file is comma-separated with the usual quoting (as pandas wrote
SimCSE's ``nli_for_simcse.csv``). Blank lines of tables are ignored, uncounted.

Pure Python and NumPy; ``tfds_stsb`` imports tensorflow_datasets when called.
"""

import csv
import math
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

from cl_jax.errors import ConfigError, DataError

# NLI labels in the GLUE / MNLI order (TFDS glue/mnli and Hugging Face snli / multi_nli too).
# SBERT's training_nli.py used contradiction 0, entailment 1, neutral 2: any fixed order
# trains its softmax classifier the same.
ENTAILMENT, NEUTRAL, CONTRADICTION = 0, 1, 2
NLI_LABELS = {"entailment": ENTAILMENT, "neutral": NEUTRAL, "contradiction": CONTRADICTION}
_LABEL_OF = {**NLI_LABELS, **{str(code): code for code in NLI_LABELS.values()}}

# Each column with the names it goes by (matched ignoring case): ours first, then SNLI / MNLI's
# (gold_label) and Hugging Face's (premise, hypothesis), or SimCSE's (sent0, sent1, hard_neg).
PAIR_COLUMNS = (("sentence1", "premise"), ("sentence2", "hypothesis"), ("label", "gold_label"))
TRIPLE_COLUMNS = (("anchor", "sent0"), ("positive", "sent1"), ("negative", "hard_neg"))
STS_COLUMNS = (("sentence1",), ("sentence2",), ("score",))
SICK_COLUMNS = (("sentence_a",), ("sentence_b",), ("relatedness_score",))
SICK_SETS = ("TRAIN", "TRIAL", "TEST")
# The STS benchmark's sts-{train,dev,test}.csv: tab-separated, no header, these fields first.
STSB_FIELDS = ("genre", "file", "year", "id", "score", "sentence1", "sentence2")
STSB_SPLITS = {"train": "5,749 pairs", "validation": "1,500 pairs",
               "test": "1,379 pairs, without gold scores"}

NLI_LAYOUTS = ("labelled pairs: a header with sentence1, sentence2, label (or SNLI / MNLI's "
               "gold_label, or premise, hypothesis), labels entailment / neutral / "
               "contradiction or 0 / 1 / 2; or triples: a header with anchor, positive, negative "
               "(or SimCSE's sent0, sent1, hard_neg)")
STS_LAYOUTS = ("a tab-separated header with sentence1, sentence2, score (GLUE's STS-B); SICK's "
               "sentence_A, sentence_B, relatedness_score (and maybe SemEval_set); or the STS "
               "benchmark's sts-*.csv, tab-separated without a header: "
               f"{', '.join(STSB_FIELDS)}")


# --- results ------------------------------------------------------------------------------


def _said(counts):
    """The words for ``[(count, noun, rest)]``: 'skipped 3 empty lines, 1 row with ...', or ''
    when every count is 0."""
    said = [f"{n} {noun}{'' if n == 1 else 's'}{rest}" for n, noun, rest in counts if n]
    return f"skipped {', '.join(said)}" if said else ""


@dataclass(frozen=True, eq=False)  # eq=False: == of NumPy fields is no bool
class Sentences:
    """The sentences of a text file, in file order.

    ``document[i]`` (int64): the document of sentence ``i``, counted from 0; a run of blank
    lines starts the next one. ``empty_lines``: the blank (or whitespace-only) lines skipped.
    """

    path: str
    texts: tuple[str, ...]
    document: np.ndarray
    empty_lines: int

    def neighbours(self):
        """``(i, i + 1)`` of every two consecutive sentences of one document: int64 (n, 2)."""
        first = np.flatnonzero(self.document[1:] == self.document[:-1])
        return np.stack([first, first + 1], axis=1)

    def skipped(self):
        return _said([(self.empty_lines, "empty line", "")])


@dataclass(frozen=True, eq=False)
class NLI:
    """Both views of an NLI file, whichever it held (``layout``: "pairs" or "triples").

    Labelled pairs ``(sentence1[i], sentence2[i], labels[i])``, labels int32 ENTAILMENT 0,
    NEUTRAL 1, CONTRADICTION 2; from a file of triples, two a triple: (anchor, positive,
    entailment), then (anchor, hard negative, contradiction).

    Triples ``(anchors[i], positives[i], hard_negatives[i])``; from a file of labelled pairs
    built as SimCSE built its own from SNLI + MNLI (Gao et al. 2021, "SimCSE", Sec. 4): a
    premise is the anchor, an entailment hypothesis of it the positive, a contradiction
    hypothesis of it the hard negative. Several hypotheses of one premise (SNLI has some) give
    ONE triple: its first entailment and its first contradiction hypothesis in file order;
    premises come in the order of their first row. SimCSE does not say how it chose: its
    275,601 triples, against 314k entailment pairs, dropped "examples without a hard negative"
    (princeton-nlp/SimCSE#238); one triple a premise fits that count better than one an
    entailment pair would (MNLI's ~131k premises each have one hypothesis of each label), and
    is deterministic. ``no_triple``: premises lacking an
    entailment or a contradiction hypothesis, so giving none; ``triples()`` refuses a file
    that gives none.

    Skipped rows: ``empty_fields`` (an empty or missing field) and ``unknown_labels``
    (``(label, rows)`` for each label not known, e.g. SNLI's "-" for no consensus).
    """

    path: str
    layout: str
    sentence1: tuple[str, ...]
    sentence2: tuple[str, ...]
    labels: np.ndarray
    anchors: tuple[str, ...]
    positives: tuple[str, ...]
    hard_negatives: tuple[str, ...]
    empty_fields: int
    unknown_labels: tuple[tuple[str, int], ...]
    no_triple: int

    def triples(self):
        """(anchors, positives, hard_negatives), for supervised SimCSE."""
        if not self.anchors:
            raise DataError(f"NLI file {self.path} gives no (anchor, positive, hard negative) "
                            "triple: no premise has both an entailment and a contradiction "
                            "hypothesis. Supervised SimCSE needs them; give it SNLI + MNLI or "
                            "SimCSE's nli_for_simcse.csv.")
        return self.anchors, self.positives, self.hard_negatives

    def skipped(self):
        return _said([(self.empty_fields, "row", " with an empty field"),
                      *((n, "row", f" with the label {label!r}")
                        for label, n in self.unknown_labels)])


@dataclass(frozen=True, eq=False)
class STS:
    """Sentence pairs and their similarity scores (float64), e.g. 0-5 (STS) or 1-5 (SICK).

    ``layout``: "sts", "sick", "stsb-csv" or "tfds". ``empty_fields``: rows skipped for an
    empty or missing sentence or score.
    """

    path: str
    layout: str
    sentence1: tuple[str, ...]
    sentence2: tuple[str, ...]
    scores: np.ndarray
    empty_fields: int

    def skipped(self):
        return _said([(self.empty_fields, "row", " with an empty field")])


# --- reading files ------------------------------------------------------------------------


def _require_file(path, kind):
    if not path or not os.path.isfile(path):
        raise DataError(f"{kind} {path!r} does not exist or is not a file; check the path.")


def _decodes(line):
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _not_utf8(path, kind):
    """The DataError for a file that is not UTF-8, naming its first line that is not."""
    with open(path, "rb") as f:  # a UTF-8 character never holds a newline byte
        line = next((n for n, text in enumerate(f, 1) if not _decodes(text)), "?")
    return DataError(f"{kind} {path} is not UTF-8 text (line {line} is not); convert it, e.g. "
                     "`iconv -f latin1 -t utf-8 FILE > NEW` for Latin-1.")


def read_lines(path):
    """A file's sentences, one a line, in file order: a ``Sentences``.

    Lines are stripped; blank ones are skipped (counted) and separate documents, so
    ``neighbours()`` never pairs sentences across a blank line (Quick-Thoughts, Logeswaran &
    Lee 2018, predicts a sentence's neighbours within its document).
    """
    kind = "Sentence file"
    _require_file(path, kind)
    texts, starts, empty, new_document = [], [], 0, True
    try:
        with open(path, encoding="utf-8-sig") as f:  # universal newlines: \n, \r\n, \r
            for line in f:
                text = line.strip()
                if not text:
                    empty += 1
                    new_document = True
                    continue
                if new_document:
                    starts.append(len(texts))
                    new_document = False
                texts.append(text)
    except UnicodeDecodeError:
        raise _not_utf8(path, kind) from None
    except OSError as err:
        raise DataError(f"Cannot read {kind} {path}: {err}.") from None
    if not texts:
        raise DataError(f"{kind} {path} holds no sentence ({empty} blank lines); it must hold "
                        "one sentence a line, UTF-8, blank lines between documents.")
    sizes = np.diff([*starts, len(texts)])
    return Sentences(path, tuple(texts), np.repeat(np.arange(len(starts), dtype=np.int64), sizes),
                     empty)


def _table(path, kind, expected, delimiter="\t"):
    """``[(line number, stripped fields)]`` of every non-blank row of a delimited file."""
    _require_file(path, kind)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    rows, end = [], 0  # end: the line the last row read ended on
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter, quoting=quoting, strict=True)
            for row in reader:
                end = reader.line_num
                fields = [x.strip() for x in row]
                if any(fields):
                    rows.append((end, fields))
    except UnicodeDecodeError:
        raise _not_utf8(path, kind) from None
    except OSError as err:
        raise DataError(f"Cannot read {kind} {path}: {err}.") from None
    except csv.Error as err:
        quotes = (" (A field holding a comma, a quote or a line break must be in quotes, its "
                  "quotes doubled.)" if delimiter == "," else "")
        raise DataError(f"Cannot read {kind} {path}: {err}, in the row from line {end + 1} "
                        f"(read to line {reader.line_num}); fix that row.{quotes}") from None
    if not rows:
        raise DataError(f"{kind} {path} is empty; expected {expected}.")
    return rows


def _columns(header, layout):
    """The index of each column of ``layout`` in ``header``, or None if one is missing."""
    names = [name.lower() for name in header]
    found = [next((names.index(a) for a in aliases if a in names), None) for aliases in layout]
    return None if None in found else found


def _fields(row, columns):
    return [row[i] if i < len(row) else "" for i in columns]


def _header_error(path, kind, header, delimiter, expected):
    other = ("tab-separated? name it .tsv" if delimiter == "," else
             "comma-separated? name it .csv" if kind == "NLI file" else "not tab-separated?")
    hint = f" (one column: is the file {other})" if len(header) == 1 else ""
    return DataError(f"The header of {kind} {path} has the columns "
                     f"{', '.join(map(repr, header))}{hint}, none of the layouts expected: "
                     f"{expected}. Its first line must name the columns.")


# --- NLI ----------------------------------------------------------------------------------


def read_nli(path):
    """An NLI file's labelled pairs and triples: an ``NLI`` (its docstring says how each view
    is built from the other). Comma-separated if named ``.csv``, else tab-separated."""
    kind = "NLI file"
    delimiter = "," if str(path).lower().endswith(".csv") else "\t"
    (_, header), *rows = _table(path, kind, NLI_LAYOUTS, delimiter)
    if pairs := _columns(header, PAIR_COLUMNS):
        return _nli_of_pairs(path, [_fields(row, pairs) for _, row in rows])
    if triples := _columns(header, TRIPLE_COLUMNS):
        return _nli_of_triples(path, [_fields(row, triples) for _, row in rows])
    raise _header_error(path, kind, header, delimiter, NLI_LAYOUTS)


def _nli_of_pairs(path, rows):
    kept, empty, unknown = [], 0, Counter()
    for premise, hypothesis, label in rows:
        if not (premise and hypothesis and label):
            empty += 1
        elif label.lower() in _LABEL_OF:
            kept.append((premise, hypothesis, _LABEL_OF[label.lower()]))
        else:
            unknown[label] += 1
    if not kept:
        raise DataError(f"NLI file {path} has no usable row: {empty} with an empty field, "
                        f"{sum(unknown.values())} with an unknown label "
                        f"({', '.join(map(repr, unknown)) or 'none'}). Labels are entailment, "
                        "neutral, contradiction or 0, 1, 2 (in that order).")
    premises, hypotheses, labels = zip(*kept, strict=True)
    anchors, positives, negatives, no_triple = _simcse_triples(kept)
    return NLI(path, "pairs", premises, hypotheses, np.asarray(labels, np.int32), anchors,
               positives, negatives, empty, tuple(unknown.most_common()), no_triple)


def _simcse_triples(pairs):
    """(anchors, positives, hard negatives, premises without a triple) of labelled pairs: each
    premise with its first entailment and first contradiction hypothesis."""
    first = {}  # premise -> {label: its first hypothesis of that label}
    for premise, hypothesis, label in pairs:
        first.setdefault(premise, {}).setdefault(label, hypothesis)
    triples = [(p, h[ENTAILMENT], h[CONTRADICTION]) for p, h in first.items()
               if ENTAILMENT in h and CONTRADICTION in h]
    columns = tuple(zip(*triples, strict=True)) or ((), (), ())
    return (*columns, len(first) - len(triples))


def _nli_of_triples(path, rows):
    kept = [row for row in rows if all(row)]
    if not kept:
        raise DataError(f"NLI file {path} has no row with an anchor, a positive and a "
                        "negative; fill them in.")
    anchors, positives, negatives = zip(*kept, strict=True)
    return NLI(path, "triples", tuple(a for a in anchors for _ in range(2)),
               tuple(s for pair in zip(positives, negatives, strict=True) for s in pair),
               np.tile(np.array([ENTAILMENT, CONTRADICTION], np.int32), len(kept)),
               anchors, positives, negatives, len(rows) - len(kept), (), 0)


# --- STS ----------------------------------------------------------------------------------


def _score(path, kind, line, text):
    try:
        score = float(text)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise DataError(f"Line {line} of {kind} {path} has the score {text!r}, not a number; "
                        "write a number (e.g. 3.8), or delete the line.")
    return score


def _sts(path, kind, layout, rows):
    """An ``STS`` of ``[(line, sentence1, sentence2, score text)]``."""
    kept = []
    for line, a, b, score in rows:
        value = _score(path, kind, line, score) if score else None
        if a and b and value is not None:
            kept.append((a, b, value))
    if not kept:
        raise DataError(f"{kind} {path} has no row with two sentences and a score; fill them "
                        "in.")
    first, second, scores = zip(*kept, strict=True)
    return STS(path, layout, first, second, np.asarray(scores, np.float64),
               len(rows) - len(kept))


def read_sts(path):
    """Scored pairs of a tab-separated file whose header names sentence1, sentence2 and score
    (other columns ignored: GLUE's STS-B train.tsv and dev.tsv are such)."""
    return _sts_of_table(path, _table(path, "STS file", STS_LAYOUTS))


def _sts_of_table(path, table):
    (_, header), *rows = table
    columns = _columns(header, STS_COLUMNS)
    if not columns:
        raise _header_error(path, "STS file", header, "\t", STS_LAYOUTS)
    return _sts(path, "STS file", "sts", [(n, *_fields(r, columns)) for n, r in rows])


def read_sick(path, semeval_set=None):
    """Scored pairs of SICK (Marelli et al. 2014): tab-separated, a header naming sentence_A,
    sentence_B, relatedness_score (1-5) and maybe SemEval_set.

    ``SICK.txt`` holds every pair, each of the SemEval_set TRAIN, TRIAL or TEST: choose one
    with ``semeval_set``. SentEval's SICK_train.txt / SICK_trial.txt / SICK_test_annotated.txt
    hold one set a file and no such column: leave ``semeval_set`` None.
    """
    return _sick_of_table(path, _table(path, "SICK file", STS_LAYOUTS), semeval_set)


def _sick_of_table(path, table, semeval_set):
    kind = "SICK file"
    (_, header), *rows = table
    columns = _columns(header, SICK_COLUMNS)
    if not columns:
        raise _header_error(path, kind, header, "\t", STS_LAYOUTS)
    set_column = _columns(header, (("semeval_set",),))
    if semeval_set is not None and semeval_set.upper() not in SICK_SETS:
        raise ConfigError(f"SICK has no SemEval set {semeval_set!r}; choose one of "
                          f"{', '.join(SICK_SETS)}.")
    if set_column and semeval_set is None:
        raise ConfigError(f"{kind} {path} holds the SemEval sets {', '.join(SICK_SETS)}: "
                          "choose one (semeval_set='TEST' to evaluate; in a run "
                          "--config.eval.sts_sick_set=TEST).")
    if set_column:
        sets = [_fields(r, set_column)[0].upper() for _, r in rows]
        chosen = [row for row, s in zip(rows, sets, strict=True) if s == semeval_set.upper()]
        if not chosen:
            raise DataError(f"{kind} {path} has no row of the SemEval set {semeval_set!r} (its "
                            f"sets: {', '.join(sorted(set(sets)))}).")
        rows = chosen
    elif semeval_set is not None:
        raise ConfigError(f"{kind} {path} has no SemEval_set column, so it cannot be cut to "
                          f"{semeval_set!r}: it holds one set (as SentEval's SICK_*.txt). "
                          "Leave semeval_set None, or use SICK.txt.")
    return _sts(path, kind, "sick", [(n, *_fields(r, columns)) for n, r in rows])


def read_stsb_csv(path):
    """Scored pairs of the STS benchmark's original sts-{train,dev,test}.csv (Cer et al. 2017):
    tab-separated (despite the name), no header, the fields ``STSB_FIELDS`` (some rows add
    more, ignored)."""
    return _stsb_of_table(path, _table(path, "STS benchmark file", STS_LAYOUTS))


def _stsb_of_table(path, table):
    score, first, second = (STSB_FIELDS.index(f) for f in ("score", "sentence1", "sentence2"))
    return _sts(path, "STS benchmark file", "stsb-csv",
                [(n, *_fields(r, (first, second, score))) for n, r in table])


def _is_stsb_row(fields):
    score = fields[STSB_FIELDS.index("score")] if len(fields) >= len(STSB_FIELDS) else ""
    try:
        return math.isfinite(float(score))
    except ValueError:
        return False


def read_sts_any(path, semeval_set=None):
    """Scored pairs of a file in any layout ``read_sts``, ``read_sick`` or ``read_stsb_csv``
    reads, told apart by its first line (``semeval_set``: for SICK.txt, ignored for the
    others)."""
    table = _table(path, "STS file", STS_LAYOUTS)
    header = table[0][1]
    if _columns(header, STS_COLUMNS):
        return _sts_of_table(path, table)
    if _columns(header, SICK_COLUMNS):
        return _sick_of_table(path, table, semeval_set)
    if _is_stsb_row(header):
        return _stsb_of_table(path, table)
    shown = ", ".join(repr(f[:40]) for f in header[:len(STSB_FIELDS)])
    raise DataError(f"STS file {path} is in none of the layouts known; its first line has the "
                    f"fields {shown}. Expected {STS_LAYOUTS}.")


def tfds_stsb(split="validation", data_dir=None):
    """Scored pairs of TFDS ``glue/stsb`` (labels 0-5), prepared beforehand: nothing is
    downloaded. ``split``: train or validation (maybe sliced or joined, "train[:10%]"); the
    test split has no gold scores (TFDS gives -1) and is refused."""
    names = {part.split("[")[0].strip() for part in split.split("+")}
    if unknown := names - set(STSB_SPLITS):
        raise ConfigError(f"glue/stsb has no split {', '.join(sorted(unknown))}; its splits: "
                          f"{', '.join(f'{s} ({n})' for s, n in STSB_SPLITS.items())}.")
    if "test" in names:
        raise ConfigError("glue/stsb's test split has no gold scores (TFDS gives them as -1), "
                          "so it cannot be scored: evaluate on 'validation' (the STS-B dev "
                          "set), or on the STS benchmark's sts-test.csv with its scores.")
    import tensorflow_datasets as tfds

    where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    try:
        records = tfds.as_numpy(tfds.load("glue/stsb", split=split, data_dir=data_dir,
                                          download=False))
    except (AssertionError, FileNotFoundError) as err:
        raise DataError(f"TFDS glue/stsb is not prepared under {where}. Prepare it once on a "
                        f"machine with network access: `tfds build glue/stsb --data_dir={where}`"
                        f", or point data_dir at the folder that holds it. ({err})") from None
    first, second, scores = [], [], []
    for record in records:
        first.append(record["sentence1"].decode().strip())
        second.append(record["sentence2"].decode().strip())
        scores.append(float(record["label"]))
    scores = np.asarray(scores, np.float64)
    if not scores.size:
        raise DataError(f"TFDS glue/stsb split {split!r} under {where} holds no pair; choose a "
                        "split (or slice) that does.")
    if (scores < 0).any():
        raise DataError(f"TFDS glue/stsb split {split!r} under {where} has "
                        f"{(scores < 0).sum()} of {scores.size} pairs without a gold score "
                        "(label -1); evaluate on 'validation', or rebuild it: `tfds build "
                        f"glue/stsb --data_dir={where} --overwrite`.")
    return STS(f"glue/stsb/{split}", "tfds", tuple(first), tuple(second), scores, 0)


# --- sentence pairs (paraphrases) ---------------------------------------------------------

PARAPHRASE_COLUMNS = (("sentence1", "sentence", "anchor", "text"),
                ("sentence2", "paraphrase", "positive", "translation"))
PARAPHRASE_LAYOUTS = ("a tab-separated header naming the first sentence (sentence1, sentence, "
                      "anchor or text) and its paraphrase (sentence2, paraphrase, positive or "
                      "translation)")


@dataclass(frozen=True)
class Pairs:
    """Sentences and their paraphrases (e.g. back-translations), in file order;
    ``empty_fields``: rows skipped for an empty sentence."""

    path: str
    sentence1: tuple[str, ...]
    sentence2: tuple[str, ...]
    empty_fields: int

    def skipped(self):
        return _said([(self.empty_fields, "row", " with an empty field")])


def read_pairs(path):
    """(sentence, paraphrase) pairs of a tab-separated file with a header
    (``PARAPHRASE_LAYOUTS``; other columns ignored): CERT's (sentence, back-translation)
    pairs, made beforehand."""
    (_, header), *rows = _table(path, "Pair file", PARAPHRASE_LAYOUTS)
    columns = _columns(header, PARAPHRASE_COLUMNS)
    if not columns:
        raise _header_error(path, "Pair file", header, "\t", PARAPHRASE_LAYOUTS)
    pairs = [_fields(r, columns) for _, r in rows]
    kept = [(a, b) for a, b in pairs if a and b]
    if not kept:
        raise DataError(f"Pair file {path} has no row with both sentences; expected "
                        f"{PARAPHRASE_LAYOUTS}.")
    first, second = zip(*kept, strict=True)
    return Pairs(str(path), first, second, len(pairs) - len(kept))


# --- labelled sentences (SentEval's classification probes) ---------------------------------

LABELLED_COLUMNS = (("sentence", "text", "sentence1"), ("label",))
LABELLED_LAYOUTS = "a tab-separated header naming a sentence (or text) and a label column"


@dataclass(frozen=True)
class Labelled:
    """Sentences and their classes: ``labels`` int32 indices into ``classes`` (the label
    strings, sorted); ``empty_fields``: rows skipped for an empty sentence or label."""

    path: str
    texts: tuple[str, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    empty_fields: int

    def skipped(self):
        return _said([(self.empty_fields, "row", " with an empty field")])


def read_labelled(path):
    """(sentence, label) rows of a tab-separated file with a header (``LABELLED_LAYOUTS``):
    a SentEval classification task (MR, CR, SUBJ, MPQA, TREC, ...) written as one TSV."""
    (_, header), *rows = _table(path, "Labelled sentence file", LABELLED_LAYOUTS)
    columns = _columns(header, LABELLED_COLUMNS)
    if not columns:
        raise _header_error(path, "Labelled sentence file", header, "\t", LABELLED_LAYOUTS)
    kept = [(t, y) for t, y in (_fields(r, columns) for _, r in rows) if t and y]
    classes = sorted({y for _, y in kept})
    if len(classes) < 2:
        raise DataError(f"Labelled sentence file {path} has {len(classes)} class(es) in its "
                        "rows with both fields; a probe needs two or more.")
    index = {c: i for i, c in enumerate(classes)}
    return Labelled(str(path), tuple(t for t, _ in kept),
                    np.asarray([index[y] for _, y in kept], np.int32), tuple(classes),
                    len(rows) - len(kept))
