"""Zero-shot classification and image<->text retrieval against hand-made answers and NumPy."""

import types

import ml_collections
import numpy as np
import pytest

from cl_jax import evaluation
from cl_jax.errors import ConfigError


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_classifier_is_renormalised_mean_of_normalised_prompts():
    prompts = np.random.RandomState(0).randn(3, 2, 4) * np.array([1.0, 5.0])[:, None]
    want = unit(unit(prompts[:, 0]) + unit(prompts[:, 1]))
    np.testing.assert_allclose(evaluation.zeroshot_classifier(prompts), want, atol=1e-6)
    # Ragged: class 1 has only its first prompt.
    mask = np.array([[True, True], [True, False], [True, True]])
    want[1] = unit(prompts[1, 0])
    np.testing.assert_allclose(evaluation.zeroshot_classifier(prompts, mask), want, atol=1e-6)


def zeroshot_case():
    """6 classes (the first 6 axes of R^8) and images whose ranks are known by hand."""
    e = np.eye(8)
    noise = 0.01 * np.random.RandomState(0).randn(2, 8)
    images = np.stack([
        e[2] + 0.3 * e[6] + noise[0],  # label 2: top-1 right
        e[4] + noise[1],  # label 4: top-1 right
        e[0] + 0.5 * e[3],  # label 3: ranked 2nd, top-1 wrong, top-5 right
        e[:5].sum(0),  # label 5: ranked 6th, both wrong
        e[0] + e[1],  # label 1: tied with class 0, which wins (lower index); top-5 right
        e[:5].sum(0),  # label -1: left out
    ])
    return images, np.array([2, 4, 3, 5, 1, -1]), e[:6]


def test_zeroshot_top1_and_top5_on_known_ranks():
    images, labels, classes = zeroshot_case()
    got = evaluation.zeroshot_accuracy(images, labels, 3 * classes, block_size=4)
    assert got == {"top1": 2 / 5, "top5": 4 / 5}


def retrieval_case():
    """4 images (axes of R^4), 6 captions; ranks worked out by hand in the test."""
    e = np.eye(4)
    texts = np.stack([
        e[1] + 0.2 * e[0],  # of image 0, looks like image 1: t2i rank 2
        e[0] + 0.1 * e[3],  # of image 0: image 0's nearest text
        e[2] + 0.5 * e[1],  # of image 1: t2i rank 2
        e[2],  # of image 2
        e[3] + 0.5 * e[0],  # of image 3
        e[0] + 0.6 * e[1] + 0.3 * e[3],  # of image 3: t2i rank 3
    ])
    return e, texts, np.array([0, 0, 1, 2, 3, 3])


def test_retrieval_on_known_ranks():
    images, texts, owner = retrieval_case()
    got = evaluation.retrieval_recall(images, texts, owner, ks=(1, 2, 3), block_size=4)
    # Image 1's texts by similarity: t0 (image 0), t5 (image 3), t2 (its own): rank 3;
    # images 0, 2, 3 find one of their own texts first.
    want = {"i2t_r1": 3 / 4, "i2t_r2": 3 / 4, "i2t_r3": 1.0,
            "t2i_r1": 3 / 6, "t2i_r2": 5 / 6, "t2i_r3": 1.0}
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()))


def recall_reference(images, texts, owner, ks):
    """Brute force in float64: every query ranked against every candidate."""
    sims = unit(images) @ unit(texts).T
    results = {}
    for k in ks:
        i2t = [np.any(owner[np.argsort(-sims[i], kind="stable")[:k]] == i)
               for i in range(len(images)) if np.any(owner == i)]
        t2i = [owner[j] in np.argsort(-sims[:, j], kind="stable")[:k]
               for j in range(len(texts)) if owner[j] >= 0]
        results[f"i2t_r{k}"], results[f"t2i_r{k}"] = np.mean(i2t), np.mean(t2i)
    return results


def random_pairs():
    rng = np.random.RandomState(1)
    images, texts = rng.randn(37, 16), rng.randn(80, 16)
    owner = rng.randint(0, 37, 80)
    owner[:3] = -1  # texts of no image: left out of t2i
    texts[3:20] = images[owner[3:20]] + 0.8 * rng.randn(17, 16)  # some findable pairs
    return images, texts, owner


def test_retrieval_matches_brute_force_with_padded_blocks():
    images, texts, owner = random_pairs()
    assert len(set(owner[owner >= 0])) < 37  # some images have no text: left out of i2t
    got = evaluation.retrieval_recall(images, texts, owner, block_size=8)
    want = recall_reference(images, texts, owner, (1, 5, 10))
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()))
    assert 0 < want["t2i_r1"] < want["t2i_r10"] < 1


class FakeContext:
    """The two methods of train.EvalContext that the image-text evaluators call."""

    def __init__(self, data=None, prompts=None):
        self.data, self.prompts, self.asked = data, prompts, []

    def image_text(self, which):
        self.asked.append(which)
        return self.data

    def class_prompt_embeddings(self, which):
        return self.prompts


def settings(kind, **extra):
    return ml_collections.ConfigDict(dict(type=kind, every_steps=0, **extra))


def test_evaluators_without_a_text_tower_return_nothing():
    images, labels, classes = zeroshot_case()
    without_labels = types.SimpleNamespace(image_embeddings=images, labels=None,
                                           text_embeddings=None, text_to_image=None)
    for context in (FakeContext(), FakeContext(without_labels, classes[:, None])):
        for kind in ("zeroshot", "retrieval"):
            assert evaluation.EVALUATORS[kind](context, settings(kind)) == {}


def test_evaluators_report_their_keys_on_the_asked_split():
    images, _, classes = zeroshot_case()
    images, labels = images[[0, 0, 0, 1, 2, 5]], np.array([2, 2, 2, 4, 3, -1])
    # Two prompts per class, the second with a part shared by all classes: same ranks.
    prompts = np.stack([classes, 2 * classes + 0.1 * np.eye(8)[7]], axis=1)
    zs = FakeContext(types.SimpleNamespace(image_embeddings=images, labels=labels), prompts)
    got = evaluation.run_evaluators(zs, {"zs": settings("zeroshot", split="train", block_size=4)},
                                    1, True, 0)
    assert got == {"zeroshot_top1": 4 / 5, "zeroshot_top5": 1.0, "zeroshot_majority": 3 / 5}
    assert zs.asked == ["train"]

    images, texts, owner = random_pairs()
    rt = FakeContext(dict(image_embeddings=images, labels=None, text_embeddings=texts,
                          text_to_image=owner))
    got = evaluation.run_evaluators(rt, {"rt": settings("retrieval", block_size=8)}, 1, True, 0)
    want = recall_reference(images, texts, owner, (1, 5, 10))
    assert sorted(got) == ["i2t_r1", "i2t_r10", "i2t_r5", "t2i_r1", "t2i_r10", "t2i_r5"]
    np.testing.assert_allclose([got[k] for k in want], list(want.values()))
    assert rt.asked == ["test"]


def test_an_evaluator_of_type_none_is_off():
    images, texts, owner = random_pairs()
    context = FakeContext(dict(image_embeddings=images, labels=None, text_embeddings=texts,
                               text_to_image=owner))
    evals = {"rt": settings("none", block_size=8)}
    evaluation.check_evals(evals)  # no ConfigError
    for final in (False, True):
        assert evaluation.run_evaluators(context, evals, 1, final, 1) == {}
    assert context.asked == []
    with pytest.raises(ConfigError, match="evals.rt.type is 'nne'.*or 'none'"):
        evaluation.check_evals({"rt": settings("nne")})


def test_retrieval_with_image_groups_counts_any_image_of_a_name():
    """Two pictures of one name (group 0) and one each of two others; a text's hit is any
    picture of its name, an image's hit its name's text."""
    from cl_jax.evaluation.image_text import retrieval_recall

    e = np.eye(4)
    images = np.stack([e[3] + 0.1 * e[0], e[0], e[1], 0.9 * e[0] + e[2]])  # groups 0, 0, 1, 2
    texts = np.stack([e[0], e[1], e[2]])
    got = retrieval_recall(images, texts, np.arange(3), ks=(1, 2), image_groups=[0, 0, 1, 2])
    # i2t: image 0 sees text 0 first (0.1 > 0); image 1 text 0; image 2 text 1; image 3 sees
    # text 2 (1.0) before text 0 (0.9). t2i: text 0's best images are 1 (1.0), then 3 (0.9):
    # a hit at 1 through image 1; text 1 image 2; text 2 image 3.
    assert got == {"i2t_r1": 1.0, "i2t_r2": 1.0, "t2i_r1": 1.0, "t2i_r2": 1.0}
    without = retrieval_recall(images[[0, 2, 3]], texts, np.arange(3), ks=(1,))
    assert without == {"i2t_r1": 1.0, "t2i_r1": 2 / 3}  # text 0's best is image 2 (group 2)
