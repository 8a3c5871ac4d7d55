"""WordNet 3.0, embedded: the default text data of the sentence-embedding methods.

WordNet (Miller 1995; Fellbaum 1998) groups English words into synsets, each with a gloss
(definition and usage examples), a lexicographer category (``LEXNAMES``) and, for nouns and
verbs, hypernyms. ``load`` reads cl_jax's derivative of the 117,659 synsets of WordNet 3.0
(``wordnet30/``: built by ``scripts/build_wordnet.py``, licence in ``wordnet30/LICENSE``); the
rest turns it into training and evaluation sets, all deterministic by ``seed``:

- ``glosses``: definitions, for unsupervised training (SimCSE, Gao et al. 2021);
- ``gloss_example_pairs``, ``synonym_pairs``: (anchor, positive, hard negative) text triples,
  the negative from a sibling synset (another hyponym of a hypernym of the anchor's synset; so
  nouns and verbs only), for supervised SimCSE / SBERT triplet training (Reimers & Gurevych
  2019);
- ``category_split``: definitions labelled by lexicographer category, disjoint train / test
  parts for linear and kNN probes;
- ``definition_word``: (definition, word) pairs, for definition -> word retrieval (R@k; the
  reverse dictionary task of Hill et al. 2016);
- ``wup_similarity``, ``similarity_benchmark``: Wu-Palmer similarity (Wu & Palmer 1994) and a
  graded pair set scored by it, a taxonomy proxy for STS;
- ``synonyms``: word -> its WordNet synonyms, for EDA's synonym replacement (Wei & Zou 2019).

``pos`` arguments are strings of part-of-speech letters: ``n`` noun, ``v`` verb, ``a``
adjective (with its satellites, as in WordNet's own counts), ``s`` satellite adjective only,
``r`` adverb; ``None`` is all of them. Pure Python and NumPy.
"""

import functools
import lzma
import os
import re
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from cl_jax.errors import DataError

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wordnet30", "wordnet30.tsv.xz")
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)
_COLUMNS = ("id", "lexname", "sense", "lemmas", "hypernyms", "definition", "examples")
_POS = "nvasr"
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, eq=False)
class WordNet:
    """The synsets, one row each: nouns, verbs, adjectives (with satellites), adverbs, each in
    the order of their offsets in WordNet's data files.

    ``ids``: pos letter + 8-digit offset (``n02084071``; satellites ``s...``). ``pos``: (N,)
    str of one letter. ``lexname``: (N,) int32 index into ``LEXNAMES``. ``sense``: (N,) int32,
    the sense number of the first lemma. ``lemmas``: spaces for underscores, case kept.
    ``hypernyms``: row indices of the ``@`` (hypernym) and ``@i`` (instance hypernym) targets.
    ``gloss``: the definition. ``examples``: the usage examples, quotes removed.
    """

    ids: tuple[str, ...]
    pos: np.ndarray
    lexname: np.ndarray
    sense: np.ndarray
    lemmas: tuple[tuple[str, ...], ...]
    hypernyms: tuple[tuple[int, ...], ...]
    gloss: tuple[str, ...]
    examples: tuple[tuple[str, ...], ...]

    def __len__(self):
        return len(self.ids)

    @functools.cached_property
    def names(self):
        """NLTK's synset names, ``<first lemma>.<pos>.<sense:02d>`` (``dog.n.01``), ``sense``
        WordNet's sense number (index.<pos> order). NLTK 3.10 numbers satellite adjectives
        among the word's satellites only, so 2,007 of their names differ from its
        (``parturient.s.02`` here is its ``parturient.s.01``); the rest are the same."""
        senses = self.sense.tolist()
        return tuple(f"{lemmas[0].lower().replace(' ', '_')}.{i[0]}.{s:02d}"
                     for lemmas, i, s in zip(self.lemmas, self.ids, senses, strict=True))

    @functools.cached_property
    def _rows(self):
        return {key: i for keys in (self.names, self.ids) for i, key in enumerate(keys)}

    def row(self, key):
        """The row of a synset id (``n02084071``) or NLTK name (``dog.n.01``)."""
        if key not in self._rows:
            raise KeyError(f"No WordNet 3.0 synset {key!r} (an id like 'n02084071' or a name "
                           f"like 'dog.n.01').")
        return self._rows[key]


class Triples(NamedTuple):
    """(anchor, positive, negative) texts; ``rows``: the anchor's (and positive's) synset,
    ``negative_rows``: the negative's, a sibling synset."""

    anchors: tuple[str, ...]
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    rows: np.ndarray
    negative_rows: np.ndarray


class Labelled(NamedTuple):
    """Texts of the synsets ``rows`` with int ``labels``."""

    rows: np.ndarray
    texts: tuple[str, ...]
    labels: np.ndarray


class Retrieval(NamedTuple):
    """Queries and their keys, ``keys[i]`` the one answer to ``queries[i]``, all distinct."""

    rows: np.ndarray
    queries: tuple[str, ...]
    keys: tuple[str, ...]


class Graded(NamedTuple):
    """Text pairs with a similarity score in [0, 1]; ``rows``: (n, 2) synset rows."""

    rows: np.ndarray
    first: tuple[str, ...]
    second: tuple[str, ...]
    scores: np.ndarray


@functools.cache
def load(path=PATH):
    """The ``WordNet`` in ``path`` (``build_wordnet.py``'s column-major xz text), cached."""
    if not os.path.isfile(path):
        raise DataError(f"The WordNet 3.0 data file {path} does not exist: reinstall cl_jax with "
                        "its package data, or rebuild it with scripts/build_wordnet.py.")
    with lzma.open(path, "rt", encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    if (lines[1] != "#lexnames\t" + " ".join(LEXNAMES)
            or lines[2] != "#columns\t" + "\t".join(_COLUMNS) or (len(lines) - 4) % 7):
        raise DataError(f"{path} is not a WordNet 3.0 file of scripts/build_wordnet.py.")
    n = (len(lines) - 4) // 7
    ids, lexname, sense, lemmas, hypernyms, gloss, examples = (
        lines[3 + i * n: 3 + (i + 1) * n] for i in range(7))
    pos, lexname, sense = (np.array(ids, dtype="<U1"), np.array(lexname).astype(np.int32),
                           np.array(sense).astype(np.int32))
    for array in (pos, lexname, sense):
        array.flags.writeable = False  # shared by every caller of the cached load
    return WordNet(
        ids=tuple(ids), pos=pos, lexname=lexname, sense=sense,
        lemmas=tuple(tuple(x.split("|")) for x in lemmas),
        hypernyms=tuple(tuple(map(int, x.split())) for x in hypernyms), gloss=tuple(gloss),
        examples=tuple(tuple(x.split("|")) if x else () for x in examples))


def pos_mask(wn, pos=None):
    """(N,) bool: the synsets whose part of speech is one of the letters ``pos``."""
    if pos is None:
        return np.ones(len(wn), bool)
    letters = set(pos) | ({"s"} if "a" in pos else set())
    if not pos or letters - set(_POS):
        raise ValueError(f"pos={pos!r}: give letters of {_POS!r} (a: adjectives with "
                         "satellites), or None for all.")
    return np.isin(wn.pos, sorted(letters))


def _subset(n, limit, rng):
    """Sorted indices of ``limit`` of ``n`` items drawn by ``rng`` (all when ``limit`` is 0)."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, limit, replace=False))


def glosses(wn, pos=None, limit=0, seed=0):
    """``(rows, definitions)`` of the synsets of ``pos``: all, or ``limit`` of them drawn by
    ``seed`` (in row order), for unsupervised training."""
    rows = np.flatnonzero(pos_mask(wn, pos))
    rows = rows[_subset(len(rows), limit, np.random.default_rng(seed))]
    return rows, tuple(wn.gloss[i] for i in rows.tolist())


# --- the hypernym graph ---------------------------------------------------------------------


class _Graph(NamedTuple):
    """The hypernym edges: ``up`` (CSR by child: its hypernyms), ``down`` (CSR by parent: its
    hyponyms, sorted)."""

    up_ptr: np.ndarray
    up: np.ndarray
    down_ptr: np.ndarray
    down: np.ndarray


@functools.cache
def _graph(wn):
    counts = np.array([len(h) for h in wn.hypernyms])
    child = np.repeat(np.arange(len(wn)), counts)
    parent = np.fromiter((p for h in wn.hypernyms for p in h), np.int64, counts.sum())
    order = np.lexsort((child, parent))
    down_ptr = np.concatenate([[0], np.cumsum(np.bincount(parent, minlength=len(wn)))])
    return _Graph(np.concatenate([[0], np.cumsum(counts)]), parent, down_ptr, child[order])


@functools.cache
def _depths(wn):
    """``(min_depth, max_depth)``: (N,) the fewest / most hypernym links up to a root (a
    synset without hypernyms, depth 0), NLTK's ``Synset.min_depth`` / ``max_depth``."""
    g = _graph(wn)
    child = np.repeat(np.arange(len(wn)), np.diff(g.up_ptr))
    is_root = np.diff(g.up_ptr) == 0
    low = np.where(is_root, 0, len(wn))
    high = np.zeros(len(wn), np.int64)
    for depth, update in ((low, np.minimum.at), (high, np.maximum.at)):
        while True:  # relax every edge until nothing moves: as many rounds as the depth
            before = depth.copy()
            update(depth, child, depth[g.up] + 1)
            if np.array_equal(before, depth):
                break
    return low, high


@functools.lru_cache(maxsize=1 << 14)
def _up_distances(wn, row):
    """``{ancestor: fewest links up}`` of ``row``, itself included at 0 (breadth first, as
    NLTK's ``Synset._shortest_hypernym_paths``)."""
    distances, queue = {}, deque([(row, 0)])
    while queue:
        node, d = queue.popleft()
        if node not in distances:
            distances[node] = d
            queue.extend((h, d + 1) for h in wn.hypernyms[node])
    return distances


def _path_distance(wn, a, b):
    """NLTK's ``shortest_path_distance``: the fewest links from ``a`` and ``b`` up to a common
    ancestor, added."""
    if a == b:
        return 0
    da, db = _up_distances(wn, a), _up_distances(wn, b)
    return min(da[c] + db[c] for c in da.keys() & db.keys())


def wup_similarity(wn, a, b):
    """Wu-Palmer similarity (Wu & Palmer 1994) of the noun synsets of rows ``a`` and ``b``,
    exactly as NLTK's ``Synset.wup_similarity`` on WordNet 3.0's nouns (one root, entity, so
    no simulated root; equal to NLTK 3.10's on 25,000 pairs):

        wup = 2 D / (d_a + d_b + 2 D),  D = max_depth(lcs) + 1,
        d_x = shortest_path_distance(x, lcs),

    where the least common subsumer ``lcs`` is, among the common hypernyms of ``a`` and ``b``
    (each counts as its own hypernym; instance hypernyms count), one of greatest ``min_depth``
    (NLTK's ``use_min_depth=True``): ``a`` itself if it is one, else the first by NLTK name.
    ``min_depth`` / ``max_depth`` count links up to entity (depth 0), ``D`` counts the lcs's
    nodes on its longest path up; ``d_x`` is the fewest links from ``x`` and the lcs up to a
    common ancestor (the link count from ``x`` to the lcs, unless a shorter detour exists).
    E.g. dog.n.01, cat.n.01: lcs carnivore.n.01 (max_depth 11), D = 12, d = 2 + 2: 24/28.
    Like NLTK it may be below 1 for ``a == b`` when the synset has several hypernyms.
    """
    if wn.pos[a] != "n" or wn.pos[b] != "n":
        raise ValueError(f"wup_similarity takes noun synsets; rows {a}, {b} are "
                         f"{wn.pos[a]!r}, {wn.pos[b]!r}.")
    min_depth, max_depth = _depths(wn)
    common = _up_distances(wn, a).keys() & _up_distances(wn, b).keys()
    deepest = max(min_depth[c] for c in common)
    subsumers = [c for c in common if min_depth[c] == deepest]
    lcs = a if a in subsumers else min(subsumers, key=wn.names.__getitem__)
    depth = int(max_depth[lcs]) + 1
    return 2 * depth / (_path_distance(wn, a, lcs) + _path_distance(wn, b, lcs) + 2 * depth)


# --- hard negatives from sibling synsets ----------------------------------------------------


def _sibling_draw(wn, anchors, eligible, rng):
    """A sibling row with ``eligible`` for each of the rows ``anchors``, -1 where none: one of
    the anchor's hypernyms that has such a hyponym, then one of those, uniformly."""
    g, n = _graph(wn), len(wn)
    has = eligible[g.down]
    kids = g.down[has]  # the eligible hyponyms, by parent then row
    kid_parent = np.repeat(np.arange(n), np.diff(g.down_ptr))[has]
    kid_ptr = np.concatenate([[0], np.cumsum(np.bincount(kid_parent, minlength=n))])
    # every (anchor, hypernym) edge, grouped by anchor
    n_up = np.diff(g.up_ptr)[anchors]
    owner = np.repeat(np.arange(len(anchors)), n_up)
    edge = np.arange(n_up.sum()) - np.repeat(np.cumsum(n_up) - n_up, n_up)
    parent = g.up[g.up_ptr[anchors][owner] + edge]
    others = np.diff(kid_ptr)[parent] - eligible[anchors][owner]
    # the valid edge with the largest random key is each anchor's hypernym
    key = np.where(others > 0, rng.random(len(parent)), -1.0)
    best = np.full(len(anchors), -1.0)
    np.maximum.at(best, owner, key)
    pick = np.flatnonzero((key == best[owner]) & (key >= 0))
    who, parent, others = owner[pick], parent[pick], others[pick]
    j = np.floor(rng.random(len(pick)) * others).astype(np.int64)
    # skip the anchor's own place among its parent's eligible hyponyms
    self_at = np.searchsorted(kid_parent * n + kids, parent * n + anchors[who]) - kid_ptr[parent]
    j += eligible[anchors[who]] & (j >= self_at)
    negative = np.full(len(anchors), -1)
    negative[who] = kids[kid_ptr[parent] + j]
    return negative


def _other(texts, avoid, u):
    """The first of ``texts`` from place ``u * len(texts)`` on, cyclically, unlike every one of
    ``avoid`` case-insensitively (a random one for ``u`` uniform in [0, 1)), or None."""
    avoid = [t.lower() for t in avoid]
    start = int(u * len(texts))
    if texts[start].lower() not in avoid:
        return texts[start]
    return next((t for t in texts[start + 1:] + texts[:start] if t.lower() not in avoid), None)


def _triples(wn, rows, anchors, positives, pool, rng, limit):
    """``Triples`` of the synsets ``rows`` with a negative drawn from ``pool[sibling]``, unlike
    the anchor and positive; drops those without one, then keeps ``limit``."""
    eligible = np.array([bool(p) for p in pool])
    negative_rows = _sibling_draw(wn, rows, eligible, rng)
    negatives = [None if s < 0 else _other(pool[s], (a, p), u) for s, a, p, u in zip(
        negative_rows.tolist(), anchors, positives, rng.random(len(rows)).tolist(), strict=True)]
    keep = np.flatnonzero([t is not None for t in negatives])
    keep = keep[_subset(len(keep), limit, rng)]
    return Triples(tuple(anchors[i] for i in keep), tuple(positives[i] for i in keep),
                   tuple(negatives[i] for i in keep), rows[keep], negative_rows[keep])


def gloss_example_pairs(wn, pos=None, limit=0, seed=0):
    """(definition, usage example, a sibling synset's usage example) ``Triples``, one per
    usage example of a synset of ``pos`` that has a sibling with an example unlike it: the
    positive pairs of supervised SimCSE (Gao et al. 2021), whose hard negative is a sentence
    of a closely related but different meaning. ``limit``: keep that many, drawn by ``seed``.
    Only nouns and verbs have hypernyms, hence siblings."""
    rng = np.random.default_rng(seed)
    counts = np.array([len(e) for e in wn.examples]) * pos_mask(wn, pos)
    rows = np.repeat(np.arange(len(wn)), counts)
    positives = [e for i in np.flatnonzero(counts).tolist() for e in wn.examples[i]]
    anchors = [wn.gloss[i] for i in rows.tolist()]
    return _triples(wn, rows, anchors, positives, wn.examples, rng, limit)


def _distinct(texts):
    """``texts`` without those equal, case-insensitively, to an earlier one."""
    seen = set()
    return tuple(t for t in texts if not (t.lower() in seen or seen.add(t.lower())))


def synonym_pairs(wn, pos=None, limit=0, seed=0):
    """(lemma, a synonym lemma, a sibling synset's lemma) ``Triples``: one per lemma of each
    synset of ``pos`` with two or more lemmas (case-insensitively distinct), the synonym drawn
    among the others, the negative a co-hyponym's lemma unlike both (SBERT's triplet objective,
    Reimers & Gurevych 2019, on words). ``limit``: keep that many, drawn by ``seed``."""
    rng = np.random.default_rng(seed)
    distinct = [_distinct(lemmas) if len(lemmas) > 1 else lemmas for lemmas in wn.lemmas]
    counts = np.array([len(d) if len(d) > 1 else 0 for d in distinct]) * pos_mask(wn, pos)
    rows = np.repeat(np.arange(len(wn)), counts)
    anchors = [x for i in np.flatnonzero(counts).tolist() for x in distinct[i]]
    # the positive: one of the other k - 1 lemmas, uniformly
    k = counts[rows]
    place = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    other = (place + 1 + np.floor(rng.random(len(rows)) * (k - 1)).astype(np.int64)) % k
    positives = [distinct[i][j] for i, j in zip(rows.tolist(), other.tolist(), strict=True)]
    return _triples(wn, rows, anchors, positives, wn.lemmas, rng, limit)


# --- probes and benchmarks ------------------------------------------------------------------


def _unique_gloss_rows(wn, pos):
    """Rows of ``pos`` whose definition no other synset has."""
    counts = {}
    for g in wn.gloss:
        counts[g] = counts.get(g, 0) + 1
    unique = np.array([counts[g] == 1 for g in wn.gloss])
    return np.flatnonzero(unique & pos_mask(wn, pos))


def category_split(wn, pos=None, test_fraction=0.2, limit=0, seed=0):
    """``(train, test)`` ``Labelled`` definitions, labels the lexicographer category (an index
    into ``LEXNAMES``: 45 classes with ``pos=None``), for linear and kNN probes.

    Definitions that two synsets share are left out, so no text is in both parts. ``limit``
    keeps that many synsets, drawn by ``seed``; the split is stratified: each category puts
    ``round(test_fraction * count)`` of its synsets, drawn by ``seed``, into ``test``.
    """
    rng = np.random.default_rng(seed)
    rows = _unique_gloss_rows(wn, pos)
    rows = rows[_subset(len(rows), limit, rng)]
    labels = wn.lexname[rows]
    order = np.lexsort((rng.random(len(rows)), labels))
    per_class = np.bincount(labels, minlength=len(LEXNAMES))
    rank = np.empty(len(rows), np.int64)
    rank[order] = np.arange(len(rows)) - np.repeat(np.cumsum(per_class) - per_class, per_class)
    is_test = rank < np.round(test_fraction * per_class)[labels]

    def part(mask):
        chosen = rows[mask]
        return Labelled(chosen, tuple(wn.gloss[i] for i in chosen.tolist()), wn.lexname[chosen])

    return part(~is_test), part(is_test)


def _words(text):
    """The words of ``text``, lower case, space-separated."""
    return " ".join(_WORD.findall(text.lower()))


def definition_word(wn, pos=None, limit=0, seed=0):
    """``Retrieval`` of definition -> word: for each word (first lemma, case-insensitively
    distinct) the definition of its first sense (NLTK's ``<word>.<pos>.01``; the first part
    of speech in noun, verb, adjective, adverb order where it has several), leaving out
    definitions that contain the word. ``limit``: that many, drawn by ``seed``."""
    rows, seen = [], set()
    for i in np.flatnonzero((wn.sense == 1) & pos_mask(wn, pos)).tolist():
        word = wn.lemmas[i][0].lower()
        if word not in seen and f" {_words(word)} " not in f" {_words(wn.gloss[i])} ":
            seen.add(word)
            rows.append(i)
    rows = np.array(rows, np.int64)
    rows = rows[_subset(len(rows), limit, np.random.default_rng(seed))]
    return Retrieval(rows, tuple(wn.gloss[i] for i in rows.tolist()),
                     tuple(wn.lemmas[i][0] for i in rows.tolist()))


def _walk(wn, start, steps, rng, down):
    """The row reached from ``start`` by ``steps`` random links up (``down=False``) or down,
    stopping early at a root or a leaf."""
    g, node = _graph(wn), start
    ptr, links = (g.down_ptr, g.down) if down else (g.up_ptr, g.up)
    for _ in range(steps):
        if ptr[node + 1] == ptr[node]:
            break
        node = int(links[ptr[node] + rng.integers(ptr[node + 1] - ptr[node])])
    return node


def similarity_benchmark(wn, num_pairs=1000, seed=0, bins=10):
    """``Graded`` pairs of noun definitions scored by the ``wup_similarity`` of their synsets.

    This is a taxonomy proxy, not human STS: the score says how close the two synsets sit in
    WordNet's noun hierarchy, not how similar people judge the texts. Its Spearman correlation
    with embedding cosines (``sts_spearman``) is a self-contained stand-in for STS-B (Cer et al.
    2017).

    Candidates (``4 * num_pairs``): half are pairs of random nouns (mostly distant), half
    random walks from a random noun, 1 to 4 links up then as many or fewer down (siblings,
    cousins, ancestors); pairs of one synset or of one definition are dropped. The scores are
    spread over [0, 1] by drawing an equal share from each of ``bins`` equal-width score bins,
    filling the share of a bin too small from the remaining candidates. Order: random.
    """
    rng = np.random.default_rng(seed)
    nouns = np.flatnonzero(wn.pos == "n")
    half = 2 * num_pairs
    firsts = rng.choice(nouns, 2 * half).tolist()
    seconds = rng.choice(nouns, half).tolist()
    for a in firsts[half:]:
        up = int(rng.integers(1, 5))
        top = _walk(wn, a, up, rng, down=False)
        seconds.append(_walk(wn, top, int(rng.integers(0, up + 1)), rng, down=True))
    pairs = {(min(a, b), max(a, b)) for a, b in zip(firsts, seconds, strict=True)
             if a != b and wn.gloss[a] != wn.gloss[b]}
    pairs = np.array(sorted(pairs), np.int64).reshape(-1, 2)
    scores = np.array([wup_similarity(wn, a, b) for a, b in pairs.tolist()])
    bin_of = np.minimum((scores * bins).astype(np.int64), bins - 1)
    shuffled = rng.permutation(len(pairs))
    taken = np.zeros(len(pairs), bool)
    for b in range(bins):
        taken[shuffled[bin_of[shuffled] == b][:num_pairs // bins]] = True
    rest = shuffled[~taken[shuffled]]
    taken[rest[:max(0, num_pairs - taken.sum())]] = True
    chosen = rng.permutation(np.flatnonzero(taken))
    return Graded(pairs[chosen], tuple(wn.gloss[a] for a in pairs[chosen, 0].tolist()),
                  tuple(wn.gloss[b] for b in pairs[chosen, 1].tolist()), scores[chosen])


def synonyms(wn, pos=None):
    """``{word: sorted synonyms}``, lower case: for each lemma of the synsets of ``pos``, the
    other lemmas of every synset it is in (itself left out); words without one are absent.
    Keys in the order of their first synset with two lemmas."""
    found = {}
    for i in np.flatnonzero(pos_mask(wn, pos)).tolist():
        if len(wn.lemmas[i]) > 1:
            words = {w.lower() for w in wn.lemmas[i]}
            for w in words:
                found.setdefault(w, set()).update(words)
    return {w: tuple(sorted(s - {w})) for w, s in found.items() if len(s) > 1}
