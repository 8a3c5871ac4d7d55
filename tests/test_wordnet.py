"""cl_jax.data.wordnet against facts read by hand from WordNet 3.0's data files (wndb)."""

import collections

import numpy as np
import pytest

from cl_jax.data import wordnet


@pytest.fixture(scope="module")
def wn():
    return wordnet.load()


def _is_sibling(wn, a, b):
    return a != b and bool(set(wn.hypernyms[a]) & set(wn.hypernyms[b]))


# The hypernym (@) links read from data.noun: the chains of dog, cat and car up to entity.
CHAINS = {
    "n02084071": {"n02083346", "n01317541"},  # dog -> canine, domestic animal
    "n02083346": {"n02075296"},  # canine -> carnivore
    "n01317541": {"n00015388"},  # domestic animal -> animal
    "n02121620": {"n02120997"},  # cat -> feline
    "n02120997": {"n02075296"},  # feline -> carnivore
    "n02075296": {"n01886756"},  # carnivore -> placental
    "n01886756": {"n01861778"},  # placental -> mammal
    "n01861778": {"n01471682"},  # mammal -> vertebrate
    "n01471682": {"n01466257"},  # vertebrate -> chordate
    "n01466257": {"n00015388"},  # chordate -> animal
    "n00015388": {"n00004475"},  # animal -> organism
    "n00004475": {"n00004258"},  # organism -> living thing
    "n00004258": {"n00003553"},  # living thing -> whole
    "n02958343": {"n03791235"},  # car -> motor vehicle
    "n03791235": {"n04170037"},  # motor vehicle -> self-propelled vehicle
    "n04170037": {"n04576211"},  # self-propelled vehicle -> wheeled vehicle
    "n04576211": {"n04524313", "n03094503"},  # wheeled vehicle -> vehicle, container
    "n04524313": {"n03100490"},  # vehicle -> conveyance
    "n03100490": {"n03575240"},  # conveyance -> instrumentality
    "n03094503": {"n03575240"},  # container -> instrumentality
    "n03575240": {"n00021939"},  # instrumentality -> artifact
    "n00021939": {"n00003553"},  # artifact -> whole
    "n00003553": {"n00002684"},  # whole -> object
    "n00002684": {"n00001930"},  # object -> physical entity
    "n00001930": {"n00001740"},  # physical entity -> entity
    "n00001740": set(),  # entity, the root
}


def test_counts_and_lexnames(wn):
    counts = collections.Counter(wn.pos.tolist())
    assert len(wn) == 117_659
    assert (counts["n"], counts["v"], counts["a"] + counts["s"], counts["r"]) == (
        82_115, 13_767, 18_156, 3_621)
    assert counts["s"] == 10_693 and wordnet.pos_mask(wn, "a").sum() == 18_156
    assert len(wordnet.LEXNAMES) == 45
    assert wordnet.LEXNAMES[:4] == ("adj.all", "adj.pert", "adv.all", "noun.Tops")
    assert wordnet.LEXNAMES[5] == "noun.animal" and wordnet.LEXNAMES[44] == "adj.ppl"
    for pos, categories in (("n", range(3, 29)), ("v", range(29, 44)), ("r", [2]),
                            ("as", [0, 1, 44])):
        assert set(wn.lexname[wordnet.pos_mask(wn, pos)].tolist()) == set(categories)
    assert wordnet.load() is wn
    with pytest.raises(ValueError, match="pos"):
        wordnet.pos_mask(wn, "x")


def test_known_synsets(wn):
    dog = wn.row("n02084071")
    assert wn.row("dog.n.01") == dog and wn.ids[dog] == "n02084071" and wn.pos[dog] == "n"
    assert wn.lemmas[dog] == ("dog", "domestic dog", "Canis familiaris")
    assert wordnet.LEXNAMES[wn.lexname[dog]] == "noun.animal"
    assert wn.gloss[dog] == (
        "a member of the genus Canis (probably descended from the common wolf) that has been "
        "domesticated by man since prehistoric times; occurs in many breeds")
    assert wn.examples[dog] == ("the dog barked all night",)
    assert {wn.names[h] for h in wn.hypernyms[dog]} == {"canine.n.02", "domestic_animal.n.01"}
    # lex ids (mastermind 1, Einstein 1) dropped; two examples
    genius = wn.row("n10126926")
    assert wn.lemmas[genius] == ("genius", "mastermind", "brain", "brainiac", "Einstein")
    assert wn.examples[genius] == ("Mozart was a child genius", "he's smart but he's no Einstein")
    # an instance hypernym (@i); a definition with ';' and no example
    einstein = wn.row("n10954498")
    assert wn.lemmas[einstein] == ("Einstein", "Albert Einstein")
    assert [wn.ids[h] for h in wn.hypernyms[einstein]] == ["n10428004"]  # physicist
    assert wn.gloss[einstein].endswith("; Einstein also proposed that light consists of "
                                       "discrete quantized bundles of energy (later called "
                                       "photons) (1879-1955)")
    assert wn.examples[einstein] == ()
    # attributions after the closing quote (--Thomas Paine) dropped
    conflict = wn.row("n00958896")
    assert wn.gloss[conflict] == "an open clash between two opposing groups (or individuals)"
    assert wn.examples[conflict] == (
        "the harder the conflict the more glorious the triumph",
        "police tried to control the battle between the pro- and anti-abortion mobs")
    run = wn.row("v01926311")
    assert wn.names[run] == "run.v.01" and wordnet.LEXNAMES[wn.lexname[run]] == "verb.motion"
    assert wn.gloss[run] == ("move fast by using one's feet, with one foot off the ground at "
                             "any given time")
    assert wn.examples[run] == ("Don't run--you'll be out of breath",
                                "The children ran to the store")
    assert [wn.ids[h] for h in wn.hypernyms[run]] == ["v02055649"]  # travel rapidly
    # satellites, their syntactic markers (ip), (p), (a) dropped; no hypernyms
    assert wn.lemmas[wn.row("s00014358")] == ("abounding", "galore")
    assert wn.lemmas[wn.row("s00019731")] == ("handy", "ready to hand")
    assert wn.lemmas[wn.row("s00020103")] == ("outback", "remote")
    assert wn.hypernyms[wn.row("s00014358")] == ()
    with pytest.raises(KeyError, match="n99999999"):
        wn.row("n99999999")


def test_wup_similarity_by_hand(wn):
    assert {k: {wn.ids[h] for h in wn.hypernyms[wn.row(k)]} for k in CHAINS} == CHAINS
    r = {name: wn.row(name) for name in
         ("dog.n.01", "cat.n.01", "car.n.01", "canine.n.02", "vehicle.n.01")}
    # From CHAINS, depths in links below entity: carnivore 11, canine 12, whole 3, vehicle 7
    # (every chain above them is single). D = max_depth(lcs) + 1; d = links to the lcs.
    expected = {
        ("dog.n.01", "cat.n.01"): 2 * 12 / (2 + 2 + 2 * 12),  # lcs carnivore
        ("cat.n.01", "dog.n.01"): 2 * 12 / (2 + 2 + 2 * 12),
        # lcs whole; dog -> domestic animal -> animal -> organism -> living thing -> whole: 5;
        # car -> ... -> wheeled vehicle -> container -> instrumentality -> artifact -> whole: 7
        ("dog.n.01", "car.n.01"): 2 * 4 / (5 + 7 + 2 * 4),
        ("cat.n.01", "car.n.01"): 2 * 4 / (10 + 7 + 2 * 4),  # cat -> feline -> ... -> whole
        ("car.n.01", "vehicle.n.01"): 2 * 8 / (4 + 0 + 2 * 8),  # lcs vehicle
        ("dog.n.01", "canine.n.02"): 2 * 13 / (1 + 0 + 2 * 13),  # lcs canine
        # NLTK's min-depth lcs of dog and itself is canine (min depth 12 > dog's 8): < 1
        ("dog.n.01", "dog.n.01"): 2 * 13 / (1 + 1 + 2 * 13),
    }
    for (a, b), value in expected.items():
        assert wordnet.wup_similarity(wn, r[a], r[b]) == pytest.approx(value, abs=1e-12), (a, b)
    assert expected[("dog.n.01", "cat.n.01")] == pytest.approx(0.8571, abs=1e-4)  # NLTK's
    assert expected[("dog.n.01", "car.n.01")] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="noun"):
        wordnet.wup_similarity(wn, r["dog.n.01"], wn.row("run.v.01"))


def test_glosses(wn):
    rows, texts = wordnet.glosses(wn)
    assert len(rows) == len(wn) and texts == wn.gloss
    rows, texts = wordnet.glosses(wn, pos="v", limit=500, seed=3)
    assert len(rows) == 500 and np.all(np.diff(rows) > 0) and set(wn.pos[rows]) == {"v"}
    assert texts == tuple(wn.gloss[i] for i in rows)
    assert np.array_equal(rows, wordnet.glosses(wn, pos="v", limit=500, seed=3)[0])
    assert not np.array_equal(rows, wordnet.glosses(wn, pos="v", limit=500, seed=4)[0])


def test_gloss_example_pairs(wn):
    t = wordnet.gloss_example_pairs(wn, seed=0)
    # one per example of the synsets with a sibling that has examples
    with_examples = collections.Counter(p for i, h in enumerate(wn.hypernyms) if wn.examples[i]
                                        for p in h)
    pool = [i for i in range(len(wn)) if wn.examples[i]
            and any(with_examples[p] > 1 for p in wn.hypernyms[i])]
    examples_in_pool = sum(len(wn.examples[i]) for i in pool)
    assert 0.99 * examples_in_pool < len(t.anchors) <= examples_in_pool
    assert set(t.rows.tolist()) <= set(pool)
    for a, p, n, row, neg in zip(*t, strict=True):
        assert a == wn.gloss[row] and p in wn.examples[row] and n in wn.examples[neg]
        assert n.lower() != p.lower() and _is_sibling(wn, row, neg)
    same = wordnet.gloss_example_pairs(wn, seed=0)
    assert same.negatives == t.negatives and np.array_equal(same.negative_rows, t.negative_rows)
    other = wordnet.gloss_example_pairs(wn, seed=1)
    assert other.negatives != t.negatives
    few = wordnet.gloss_example_pairs(wn, pos="v", limit=100, seed=0)
    assert len(few.anchors) == 100 and set(wn.pos[few.rows]) == {"v"}


def test_synonym_pairs(wn):
    t = wordnet.synonym_pairs(wn, pos="v", seed=0)
    # verbs with two lemmas and a sibling; the few whose drawn sibling has only the same
    # lemmas are dropped
    children = collections.Counter(p for h in wn.hypernyms for p in h)
    pool = [i for i in np.flatnonzero(wn.pos == "v") if len({x.lower() for x in wn.lemmas[i]}) > 1
            and any(children[p] > 1 for p in wn.hypernyms[i])]
    lemmas_in_pool = sum(len({x.lower() for x in wn.lemmas[i]}) for i in pool)
    assert 0.99 * lemmas_in_pool < len(t.anchors) <= lemmas_in_pool
    assert set(t.rows.tolist()) <= set(pool)
    for a, p, n, row, neg in zip(*t, strict=True):
        assert a in wn.lemmas[row] and p in wn.lemmas[row] and a.lower() != p.lower()
        assert n in wn.lemmas[neg] and n.lower() not in (a.lower(), p.lower())
        assert _is_sibling(wn, row, neg)
    same = wordnet.synonym_pairs(wn, pos="v", seed=0)
    assert same[:3] == t[:3] and np.array_equal(same.negative_rows, t.negative_rows)
    assert wordnet.synonym_pairs(wn, pos="v", seed=1).negatives != t.negatives


def test_category_split(wn):
    train, test = wordnet.category_split(wn, test_fraction=0.2, seed=0)
    gloss_counts = collections.Counter(wn.gloss)
    unique = [i for i, g in enumerate(wn.gloss) if gloss_counts[g] == 1]
    assert sorted(train.rows.tolist() + test.rows.tolist()) == unique
    assert not set(train.texts) & set(test.texts)
    for part in (train, test):
        assert np.array_equal(part.labels, wn.lexname[part.rows])
        assert part.texts == tuple(wn.gloss[i] for i in part.rows)
    per_class = collections.Counter(wn.lexname[unique].tolist())
    test_class = collections.Counter(test.labels.tolist())
    assert len(per_class) == 45 == len(set(train.labels.tolist()))
    assert all(test_class[c] == round(0.2 * n) for c, n in per_class.items())
    again = wordnet.category_split(wn, test_fraction=0.2, seed=0)[1]
    assert np.array_equal(again.rows, test.rows)
    assert not np.array_equal(wordnet.category_split(wn, seed=1)[1].rows, test.rows)
    small_train, small_test = wordnet.category_split(wn, pos="r", limit=1000, seed=0)
    assert len(small_train.rows) + len(small_test.rows) == 1000
    assert set(small_train.labels.tolist()) == {2}  # adv.all


def test_definition_word(wn):
    r = wordnet.definition_word(wn)
    keys = [k.lower() for k in r.keys]
    assert len(set(keys)) == len(keys) > 50_000
    assert np.all(wn.sense[r.rows] == 1)
    for row, query, key in zip(r.rows, r.queries, r.keys, strict=True):
        assert query == wn.gloss[row] and key == wn.lemmas[row][0]
    dog = r.keys.index("dog")
    assert r.rows[dog] == wn.row("dog.n.01")
    adverbs = wordnet.definition_word(wn, pos="r", limit=300, seed=0)
    assert len(adverbs.rows) == 300 and set(wn.pos[adverbs.rows]) == {"r"}
    assert np.array_equal(adverbs.rows, wordnet.definition_word(wn, pos="r", limit=300)[0])


def test_similarity_benchmark(wn):
    b = wordnet.similarity_benchmark(wn, num_pairs=200, seed=0)
    assert len(b.scores) == 200 and b.rows.shape == (200, 2)
    assert np.all(b.rows[:, 0] != b.rows[:, 1]) and set(wn.pos[b.rows.ravel()]) == {"n"}
    assert len({tuple(p) for p in b.rows.tolist()}) == 200
    for (x, y), first, second, score in zip(b.rows.tolist(), b.first, b.second, b.scores,
                                            strict=True):
        assert first == wn.gloss[x] and second == wn.gloss[y]
        assert score == wordnet.wup_similarity(wn, x, y)
    # an equal share from each tenth of [0, 1] (each has enough candidates at this size)
    assert np.all((0 < b.scores) & (b.scores < 1))
    assert np.bincount((b.scores * 10).astype(int), minlength=10).tolist() == [20] * 10
    again = wordnet.similarity_benchmark(wn, num_pairs=200, seed=0)
    assert np.array_equal(again.rows, b.rows)
    assert not np.array_equal(wordnet.similarity_benchmark(wn, num_pairs=200, seed=1).rows,
                              b.rows)


def test_synonyms(wn):
    found = wordnet.synonyms(wn)
    # the other lemmas of dog's 7 noun and 1 verb synsets, from index.noun / index.verb
    assert found["dog"] == tuple(sorted([
        "domestic dog", "canis familiaris", "frump", "cad", "bounder", "blackguard", "hound",
        "heel", "frank", "frankfurter", "hotdog", "hot dog", "wiener", "wienerwurst", "weenie",
        "pawl", "detent", "click", "andiron", "firedog", "dog-iron", "chase", "chase after",
        "trail", "tail", "tag", "give chase", "go after", "track"]))
    assert found["galore"] == ("abounding",)
    assert "entity" not in found  # entity.n.01 has one lemma and no other sense
    assert all(w not in s and s == tuple(sorted(set(s))) for w, s in found.items())
    assert "dog" not in wordnet.synonyms(wn, pos="a")
