"""Readers of sentence-embedding text files (cl_jax.data.text_files), on files written here."""

import os
import subprocess
import sys

import numpy as np
import pytest

from cl_jax.data import text_files
from cl_jax.errors import ConfigError, DataError

BOM = "\ufeff"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, text, encoding="utf-8"):
    """Writes ``text`` byte for byte (its line endings kept as written)."""
    path.write_bytes(text.encode(encoding))
    return str(path)


def tsv(*rows, end="\n"):
    return "".join("\t".join(row) + end for row in rows)


# --- read_lines ---------------------------------------------------------------------------


def test_read_lines_keeps_order_and_separates_documents(tmp_path):
    text = (BOM + "\n"                                 # a blank first line (after the BOM)
            "  First sentence.\r\n"
            "Second, ünïcödé \"quoted\"\tand tabbed.  \r\n"
            "\r\n"
            " \t \r\n"                                 # whitespace only: blank
            "Third.\n"
            "\n"
            "Fourth.\n"
            "Fifth.\r"                                 # an old Mac line end
            "Sixth.")                                  # no line end at the end
    got = text_files.read_lines(write(tmp_path / "corpus.txt", text))
    assert got.texts == ("First sentence.", 'Second, ünïcödé "quoted"\tand tabbed.', "Third.",
                         "Fourth.", "Fifth.", "Sixth.")
    np.testing.assert_array_equal(got.document, [0, 0, 1, 2, 2, 2])
    assert got.document.dtype == np.int64
    assert got.empty_lines == 4
    assert got.skipped() == "skipped 4 empty lines"
    np.testing.assert_array_equal(got.neighbours(), [[0, 1], [3, 4], [4, 5]])


def test_read_lines_counts_one_and_none(tmp_path):
    one = text_files.read_lines(write(tmp_path / "a.txt", "Only one.\n\n"))
    assert one.texts == ("Only one.",) and one.skipped() == "skipped 1 empty line"
    assert one.neighbours().shape == (0, 2)
    none = text_files.read_lines(write(tmp_path / "b.txt", "A.\nB.\n"))
    assert none.empty_lines == 0 and none.skipped() == ""
    np.testing.assert_array_equal(none.neighbours(), [[0, 1]])


@pytest.mark.parametrize("text, words", [("", "holds no sentence"),
                                         ("\n \n\t\r\n", "holds no sentence (3 blank lines)")])
def test_read_lines_refuses_a_file_without_sentences(tmp_path, text, words):
    path = write(tmp_path / "empty.txt", text)
    with pytest.raises(DataError, match="one sentence a line") as err:
        text_files.read_lines(path)
    assert path in str(err.value) and words in str(err.value)


def test_readers_refuse_a_missing_file(tmp_path):
    for name in ("read_lines", "read_nli", "read_sts", "read_sick", "read_stsb_csv",
                 "read_sts_any"):
        read = getattr(text_files, name)
        for path in (str(tmp_path / "nope.txt"), str(tmp_path)):  # absent; a folder
            with pytest.raises(DataError, match="does not exist or is not a file") as err:
                read(path)
            assert repr(path) in str(err.value), name


def test_readers_name_the_line_that_is_not_utf8(tmp_path):
    text = "sentence1\tsentence2\tscore\nA.\tB.\t1\ncaf\xe9\tB.\t2\n"
    for read in (text_files.read_lines, text_files.read_sts):
        path = write(tmp_path / "latin1.tsv", text, encoding="latin-1")
        with pytest.raises(DataError, match=r"not UTF-8 text \(line 3 is not\).*iconv") as err:
            read(path)
        assert path in str(err.value)


# --- read_nli -----------------------------------------------------------------------------


def test_read_nli_reads_labelled_pairs_as_snli_writes_them(tmp_path):
    # SNLI 1.0's .txt columns (some), CRLF, unbalanced quotes, labels in every accepted form.
    header = ("gold_label", "sentence1_parse", "sentence1", "sentence2", "captionID")
    rows = [("entailment", "(ROOT ...)", 'A "man in a hat.', "A man.", "1"),
            ("Neutral ", "(ROOT ...)", "A man in a hat.", "A tall man.", "1"),
            ("contradiction", "(ROOT ...)", "A man in a hat.", "  Nobody.  ", "1"),
            ("-", "(ROOT ...)", "Kids play.", "Kids sleep.", "2"),
            ("0", "(ROOT ...)", "Zwei Hunde spielen.", "Tiere spielen.", "3"),
            ("", "(ROOT ...)", "No label.", "None.", "4"),
            ("2", "(ROOT ...)", "Zwei Hunde spielen.", "Katzen schlafen.", "3"),
            ("hidden", "(ROOT ...)", "Secret.", "Unknown.", "5"),
            ("1", "(ROOT ...)", "", "No premise.", "6"),
            ("-", "(ROOT ...)", "Kids play.", "Kids run.", "2"),
            ("entailment", "(ROOT ...)")]               # a short row: fields missing
    path = write(tmp_path / "snli_1.0_train.txt", tsv(header, *rows, end="\r\n"))
    got = text_files.read_nli(path)
    assert got.layout == "pairs"
    assert got.sentence1 == ('A "man in a hat.', "A man in a hat.", "A man in a hat.",
                             "Zwei Hunde spielen.", "Zwei Hunde spielen.")
    assert got.sentence2 == ("A man.", "A tall man.", "Nobody.", "Tiere spielen.",
                             "Katzen schlafen.")
    np.testing.assert_array_equal(got.labels, [0, 1, 2, 0, 2])
    assert got.labels.dtype == np.int32
    assert got.empty_fields == 3
    assert got.unknown_labels == (("-", 2), ("hidden", 1))
    assert got.skipped() == ("skipped 3 rows with an empty field, 2 rows with the label '-', "
                             "1 row with the label 'hidden'")


def test_read_nli_builds_simcse_triples_from_labelled_pairs(tmp_path):
    rows = [("P1", "E1a", "entailment"), ("P2", "E2", "entailment"),
            ("P1", "N1", "neutral"), ("P3", "C3", "contradiction"),
            ("P1", "C1a", "contradiction"), ("P1", "E1b", "entailment"),
            ("P2", "N2", "neutral"), ("P1", "C1b", "contradiction"),
            ("P3", "E3", "entailment"), ("P4", "E4", "0"), ("P4", "C4", "2"),
            ("P5", "E5", "-"), ("P5", "C5", "contradiction"), ("P6", "N6", "neutral")]
    got = text_files.read_nli(write(tmp_path / "nli.tsv", tsv(("premise", "hypothesis", "label"),
                                                          *rows)))
    # One triple a premise (first row's order): its first entailment and first contradiction.
    assert got.triples() == (("P1", "P3", "P4"), ("E1a", "E3", "E4"), ("C1a", "C3", "C4"))
    assert got.no_triple == 3  # P2 (no contradiction), P5 (its entailment unlabelled), P6
    assert len(got.sentence1) == 13 and got.unknown_labels == (("-", 1),)


def test_read_nli_reads_simcse_csv_triples(tmp_path):
    text = (BOM + "sent0,sent1,hard_neg\r\n"
            '"Two dogs, running.",Dogs run.,"A cat says ""meow""."\r\n'
            "Ünïcödé here.,\"A line\r\nbreak.\",No.\r\n"
            "Empty negative.,Yes.,\r\n"
            "\r\n"
            "A,B,C\r\n")
    got = text_files.read_nli(write(tmp_path / "nli_for_simcse.csv", text))
    assert got.layout == "triples"
    assert got.triples() == (("Two dogs, running.", "Ünïcödé here.", "A"),
                             ("Dogs run.", "A line\r\nbreak.", "B"),
                             ('A cat says "meow".', "No.", "C"))
    assert got.sentence1 == ("Two dogs, running.",) * 2 + ("Ünïcödé here.",) * 2 + ("A",) * 2
    assert got.sentence2 == ("Dogs run.", 'A cat says "meow".', "A line\r\nbreak.", "No.", "B",
                             "C")
    np.testing.assert_array_equal(got.labels, [0, 2, 0, 2, 0, 2])
    assert got.empty_fields == 1 and got.skipped() == "skipped 1 row with an empty field"
    assert got.no_triple == 0 and got.unknown_labels == ()


def test_read_nli_reads_anchor_positive_negative_columns(tmp_path):
    text = tsv(("Anchor", "Positive", "Negative", "id"), ("a", "p", "n", "7"))
    write(tmp_path / "triplets.tsv", text)
    got = text_files.read_nli(tmp_path / "triplets.tsv")  # a pathlib.Path too
    assert got.triples() == (("a",), ("p",), ("n",))


def test_read_nli_refuses_a_header_of_neither_layout(tmp_path):
    path = write(tmp_path / "bad.tsv", tsv(("text", "other", "label"), ("a", "b", "0")))
    with pytest.raises(DataError, match="has the columns 'text', 'other', 'label', none of "
                                        "the layouts") as err:
        text_files.read_nli(path)
    for words in (path, "sentence1, sentence2, label", "anchor, positive, negative",
                  "sent0, sent1, hard_neg", "first line must name the columns"):
        assert words in str(err.value)
    comma = write(tmp_path / "comma.tsv", "sentence1,sentence2,label\na,b,0\n")
    with pytest.raises(DataError, match=r"one column: is the file comma-separated\? name it "
                                        r"\.csv"):
        text_files.read_nli(comma)
    tabs = write(tmp_path / "tabs.csv", "sent0\tsent1\thard_neg\na\tb\tc\n")
    with pytest.raises(DataError, match=r"one column: is the file tab-separated\? name it "
                                        r"\.tsv"):
        text_files.read_nli(tabs)


def test_read_nli_refuses_a_file_without_usable_rows(tmp_path):
    path = write(tmp_path / "test.tsv", tsv(("sentence1", "sentence2", "label"),
                                            ("a", "b", "-1"), ("c", "", "0"), ("e", "f", "-")))
    with pytest.raises(DataError, match=r"no usable row: 1 with an empty field, 2 with an "
                                        r"unknown label \('-1', '-'\)\. Labels are "
                                        "entailment, neutral, contradiction or 0, 1, 2") as err:
        text_files.read_nli(path)
    assert path in str(err.value)
    triples = write(tmp_path / "t.csv", "sent0,sent1,hard_neg\na,,c\n")
    with pytest.raises(DataError, match="no row with an anchor, a positive and a negative"):
        text_files.read_nli(triples)


def test_read_nli_names_the_rows_of_an_open_quote(tmp_path):
    path = write(tmp_path / "open.csv", 'sent0,sent1,hard_neg\na,b,c\n"d,e,f\ng,h,i\n')
    with pytest.raises(DataError, match=r"in the row from line 3 \(read to line 4\); fix that "
                                        "row. .A field holding a comma") as err:
        text_files.read_nli(path)
    assert path in str(err.value)


def test_triples_refuses_pairs_without_a_triple(tmp_path):
    got = text_files.read_nli(write(tmp_path / "n.tsv", tsv(("sentence1", "sentence2", "label"),
                                                     ("a", "b", "neutral"),
                                                     ("a", "c", "entailment"))))
    assert got.anchors == () and got.no_triple == 1
    with pytest.raises(DataError, match="no premise has both an entailment and a "
                                        "contradiction hypothesis"):
        got.triples()


# --- STS, SICK, the STS benchmark ---------------------------------------------------------

GLUE_STSB_HEADER = ("index", "genre", "filename", "year", "old_index", "source1", "source2",
                    "sentence1", "sentence2", "score")


def glue_row(i, a, b, score):
    return (str(i), "main-captions", "MSRvid", "2012test", "0001", "none", "none", a, b, score)


def test_read_sts_reads_glue_stsb_tsv(tmp_path):
    text = BOM + tsv(GLUE_STSB_HEADER, glue_row(0, 'A "plane takes off.', "An air plane.", "5"),
                     glue_row(1, "Ein Mann spielt Flöte.", "A man plays.", "3.800"),
                     glue_row(2, "", "No first.", "1"),
                     glue_row(3, "No score.", "None.", " "),
                     glue_row(4, "  Spaces  ", "x", "0.25"), end="\r\n")
    got = text_files.read_sts(write(tmp_path / "dev.tsv", text))
    assert got.layout == "sts"
    assert got.sentence1 == ('A "plane takes off.', "Ein Mann spielt Flöte.", "Spaces")
    assert got.sentence2 == ("An air plane.", "A man plays.", "x")
    np.testing.assert_array_equal(got.scores, [5.0, 3.8, 0.25])
    assert got.scores.dtype == np.float64
    assert got.empty_fields == 2 and got.skipped() == "skipped 2 rows with an empty field"


@pytest.mark.parametrize("score", ["high", "nan", "inf", "3,5"])
def test_read_sts_refuses_a_score_that_is_not_a_number(tmp_path, score):
    text = tsv(("sentence1", "sentence2", "score"), ("a", "b", "1"), ("", "", ""),
               ("c", "d", score))
    path = write(tmp_path / "sts.tsv", text)
    with pytest.raises(DataError, match=f"Line 4 of STS file .* has the score '{score}', not a "
                                        "number") as err:
        text_files.read_sts(path)
    assert path in str(err.value)


def test_read_sts_refuses_a_file_without_a_header(tmp_path):
    path = write(tmp_path / "noheader.tsv", tsv(("A man.", "A woman.", "1.5")))
    with pytest.raises(DataError, match="has the columns 'A man.', 'A woman.', '1.5', none of "
                                        "the layouts.*first line must name the columns"):
        text_files.read_sts(path)
    only = write(tmp_path / "header.tsv", tsv(("sentence1", "sentence2", "score")))
    with pytest.raises(DataError, match="no row with two sentences and a score"):
        text_files.read_sts(only)
    with pytest.raises(DataError, match="is empty; expected a tab-separated header"):
        text_files.read_sts(write(tmp_path / "empty.tsv", "\n\n"))


SICK_HEADER = ("pair_ID", "sentence_A", "sentence_B", "entailment_label", "relatedness_score",
               "entailment_AB", "entailment_BA", "sentence_A_original", "sentence_B_original",
               "sentence_A_dataset", "sentence_B_dataset", "SemEval_set")


def sick_row(i, a, b, score, semeval_set):
    return (str(i), a, b, "NEUTRAL", score, "A_neutral_B", "B_neutral_A", a, b, "FLICKR",
            "FLICKR", semeval_set)


def test_read_sick_chooses_the_semeval_set(tmp_path):
    text = tsv(SICK_HEADER, sick_row(1, "A group of kids.", "Kids play.", "4.5", "TRAIN"),
               sick_row(2, 'A "quoted" man.', "A man.", "3.6", "TEST"),
               sick_row(3, "A dog.", "A cat.", "1.0", "TRIAL"),
               sick_row(4, "Señor plays.", "Someone plays.", "5", "TEST"), end="\r\n")
    path = write(tmp_path / "SICK.txt", text)
    test = text_files.read_sick(path, semeval_set="TEST")
    assert test.layout == "sick"
    assert test.sentence1 == ('A "quoted" man.', "Señor plays.")
    assert test.sentence2 == ("A man.", "Someone plays.")
    np.testing.assert_array_equal(test.scores, [3.6, 5.0])
    train = text_files.read_sick(path, semeval_set="train")
    assert train.sentence1 == ("A group of kids.",) and train.scores.tolist() == [4.5]
    with pytest.raises(ConfigError, match="holds the SemEval sets TRAIN, TRIAL, TEST: choose"):
        text_files.read_sick(path)
    with pytest.raises(ConfigError, match="no SemEval set 'dev'; choose one of TRAIN, TRIAL"):
        text_files.read_sick(path, semeval_set="dev")
    only_train = write(tmp_path / "train_only.txt", tsv(SICK_HEADER, sick_row(1, "a", "b", "2",
                                                                              "TRAIN")))
    with pytest.raises(DataError, match=r"no row of the SemEval set 'TEST' \(its sets: TRAIN\)"):
        text_files.read_sick(only_train, semeval_set="TEST")


def test_read_sick_reads_senteval_test_annotated(tmp_path):
    header = ("pair_ID", "sentence_A", "sentence_B", "relatedness_score", "entailment_judgment")
    text = tsv(header, ("6", "A man is jumping.", "A man jumps.", "4.9", "ENTAILMENT"),
               ("7", "Nobody.", "", "1", "CONTRADICTION"))
    path = write(tmp_path / "SICK_test_annotated.txt", text)
    got = text_files.read_sick(path)
    assert got.sentence1 == ("A man is jumping.",) and got.scores.tolist() == [4.9]
    assert got.empty_fields == 1
    with pytest.raises(ConfigError, match="has no SemEval_set column, so it cannot be cut to "
                                          "'TEST'"):
        text_files.read_sick(path, semeval_set="TEST")


def stsb_lines():
    """Lines of the STS benchmark's sts-test.csv layout: quotes as text, extra fields."""
    return tsv(("main-captions", "MSRvid", "2012test", "0000", "5.000",
                "A girl is styling her hair.", "A girl is brushing her hair."),
               ("main-news", "headlines", "2016", "0045", "0.600", '"You are a "hero',
                "Über 'quotes'.", "extra", "fields"),
               ("main-forums", "answers-forums", "2015", "0011", "2.250", "Short.", ""),
               end="\r\n")


def test_read_stsb_csv_reads_the_original_layout(tmp_path):
    got = text_files.read_stsb_csv(write(tmp_path / "sts-test.csv", stsb_lines()))
    assert got.layout == "stsb-csv"
    assert got.sentence1 == ("A girl is styling her hair.", '"You are a "hero')
    assert got.sentence2 == ("A girl is brushing her hair.", "Über 'quotes'.")
    np.testing.assert_array_equal(got.scores, [5.0, 0.6])
    assert got.empty_fields == 1
    bad = write(tmp_path / "bad.csv", tsv(("g", "f", "2015", "1", "five", "a", "b")))
    with pytest.raises(DataError, match="Line 1 of STS benchmark file .* has the score 'five'"):
        text_files.read_stsb_csv(bad)


def test_read_sts_any_tells_the_layouts_apart(tmp_path):
    sts = write(tmp_path / "dev.tsv", tsv(GLUE_STSB_HEADER, glue_row(0, "a", "b", "2.5")))
    sick = write(tmp_path / "SICK.txt", tsv(SICK_HEADER, sick_row(1, "c", "d", "4", "TEST"),
                                            sick_row(2, "e", "f", "1", "TRAIN")))
    stsb = write(tmp_path / "sts-test.csv", stsb_lines())
    got = [text_files.read_sts_any(p, semeval_set="TEST") for p in (sts, sick, stsb)]
    assert [g.layout for g in got] == ["sts", "sick", "stsb-csv"]
    assert [g.sentence1[0] for g in got] == ["a", "c", "A girl is styling her hair."]
    assert [g.scores.tolist() for g in got] == [[2.5], [4.0], [5.0, 0.6]]
    other = write(tmp_path / "other.tsv", tsv(("s1", "s2", "similarity"), ("a", "b", "1")))
    with pytest.raises(DataError, match="none of the layouts known; its first line has the "
                                        "fields 's1', 's2', 'similarity'") as err:
        text_files.read_sts_any(other)
    for words in (other, "sentence1, sentence2, score", "sentence_A, sentence_B, "
                  "relatedness_score", "genre, file, year, id, score, sentence1, sentence2"):
        assert words in str(err.value)


# --- TFDS glue/stsb -----------------------------------------------------------------------


def mock_stsb(labels):
    """A ``tfds.testing.mock_data`` context whose glue/stsb splits hold these pairs."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def as_dataset(self, split, **kwargs):
        return tf.data.Dataset.from_tensor_slices({
            "sentence1": ["A man plays a flute.", " Ünïcödé. "][:len(labels)],
            "sentence2": ["A man plays.", 'Say "hi".'][:len(labels)],
            "label": np.asarray(labels, np.float32), "idx": np.arange(len(labels), dtype=np.int32)})

    return tfds.testing.mock_data(as_dataset_fn=as_dataset)


def test_tfds_stsb_reads_a_prepared_split():
    with mock_stsb([3.5, 0.25]):
        got = text_files.tfds_stsb("validation", data_dir="/nonexistent")
    assert (got.path, got.layout) == ("glue/stsb/validation", "tfds")
    assert got.sentence1 == ("A man plays a flute.", "Ünïcödé.")
    assert got.sentence2 == ("A man plays.", 'Say "hi".')
    np.testing.assert_array_equal(got.scores, [3.5, 0.25])
    assert got.scores.dtype == np.float64 and got.skipped() == ""


def test_tfds_stsb_refuses_pairs_without_gold_scores():
    with mock_stsb([2.0, -1.0]), pytest.raises(DataError, match="has 1 of 2 pairs without a "
                                                                r"gold score \(label -1\)"):
        text_files.tfds_stsb("train")


@pytest.mark.parametrize("split, words", [
    ("test", "test split has no gold scores .* evaluate on 'validation'"),
    ("train+test[:10]", "test split has no gold scores"),
    ("valid", "glue/stsb has no split valid; its splits: train .5,749 pairs., validation")])
def test_tfds_stsb_refuses_splits_it_cannot_score(split, words):
    with pytest.raises(ConfigError, match=words):
        text_files.tfds_stsb(split)


def test_tfds_stsb_says_how_to_prepare_it(tmp_path):
    with pytest.raises(DataError, match=f"not prepared under {tmp_path}.*`tfds build "
                                        f"glue/stsb --data_dir={tmp_path}`"):
        text_files.tfds_stsb("validation[:5]", data_dir=str(tmp_path))


def test_readers_need_neither_tensorflow_nor_tfds(tmp_path):
    path = write(tmp_path / "s.txt", "One.\n\nTwo.\n")
    module = os.path.join(REPO, "cl_jax", "data", "text_files.py")
    code = ("import importlib.util, sys\n"
            "sys.modules['tensorflow'] = sys.modules['tensorflow_datasets'] = None\n"
            f"spec = importlib.util.spec_from_file_location('text_files', {module!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            f"assert m.read_lines({path!r}).document.tolist() == [0, 1]\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_read_pairs_reads_sentence_paraphrase_columns(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("id\tsentence\tparaphrase\n1\ta cat\tone cat\n2\t\tnothing\n"
                    "3\tdogs\tsome dogs\n")
    found = text_files.read_pairs(path)
    assert found.sentence1 == ("a cat", "dogs") and found.sentence2 == ("one cat", "some dogs")
    assert found.skipped() == "skipped 1 row with an empty field"
    path.write_text("left\tright\na\tb\n")
    with pytest.raises(DataError, match="paraphrase"):
        text_files.read_pairs(path)
