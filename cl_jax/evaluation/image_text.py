"""Zero-shot classification and image<->text retrieval of an image-text model (CLIP, SigLIP).

Zero-shot (Radford et al. 2021, section 3.1.4): every class is the renormalised mean of its
prompts' normalised text embeddings ("a photo of a {}.", ... : prompt ensembling, as open_clip
``zero_shot_classifier.py``); an image is assigned the classes of highest cosine similarity.

Retrieval (COCO / Flickr30k protocol of Karpathy & Fei-Fei 2015, as CLIP and open_clip
report it): recall@k, the fraction of queries whose match is among their k most cosine-similar
candidates. Image->text: a hit when ANY caption of the image is among its top k texts;
text->image: a hit when the image it describes is among its top k images.

Both are ``topk_hits``: queries in blocks of ``block_size`` rows, each block's similarities to
every candidate, then ``lax.top_k``. Memory: one (block_size, num_candidates) float32 block at
a time, plus the normalised candidates; e.g. block 256 x 125k COCO captions = 128 MB, so
5k images x 25k captions or 25k x 125k fit on any accelerator. Ties between candidates of
equal similarity go to the lower candidate index (``lax.top_k``). ``k`` larger than the
number of candidates is capped at it (top-5 of 3 classes is 1).
"""

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from cl_jax.evaluation.knn import l2_normalize
from cl_jax.evaluation.registry import evaluator


def zeroshot_classifier(class_text_embeddings, mask=None):
    """(C, D) zero-shot classifier from (C, T, D) embeddings of C classes x T prompts:
    ``w_c = normalise(sum_t m_ct normalise(e_ct))``, the renormalised mean of a class's
    normalised prompt embeddings (CLIP prompt ensembling). ``mask`` (C, T), true for real
    prompts, lets classes have fewer than T (padded) prompts; a class without any is zero."""
    prompts = l2_normalize(jnp.asarray(class_text_embeddings, jnp.float32))
    if mask is not None:
        prompts = prompts * jnp.asarray(mask, jnp.float32)[..., None]
    return l2_normalize(jnp.sum(prompts, axis=1))


@functools.partial(jax.jit, static_argnames=("ks", "block_size"))
def topk_hits(queries, query_ids, candidates, candidate_ids, ks, block_size=256):
    """(Nq, len(ks)) bool: ``hits[q, j]`` whether one of the ``ks[j]`` candidates of highest
    cosine similarity to query q has ``candidate_ids == query_ids[q]``.

    Queries go in blocks of ``block_size`` (one (block_size, Nc) similarity block in memory);
    ties go to the lower candidate index; ``k`` is capped at Nc. Ids of -1 match nothing
    when the other side's ids are >= 0.
    """
    queries = l2_normalize(queries.astype(jnp.float32))
    candidates = l2_normalize(candidates.astype(jnp.float32))
    num, dim = queries.shape
    block_size = min(block_size, num)
    pad = -num % block_size
    blocks = jnp.pad(queries, ((0, pad), (0, 0))).reshape(-1, block_size, dim)
    ids = jnp.pad(query_ids, (0, pad), constant_values=-1).reshape(-1, block_size)
    depth = min(max(ks), candidates.shape[0])

    def block_hits(block_and_ids):
        block, target = block_and_ids
        similarity = jnp.matmul(block, candidates.T, precision=jax.lax.Precision.HIGHEST)
        _, top = jax.lax.top_k(similarity, depth)
        match = candidate_ids[top] == target[:, None]
        return jnp.stack([jnp.any(match[:, :min(k, depth)], axis=1) for k in ks], axis=1)

    return jax.lax.map(block_hits, (blocks, ids)).reshape(-1, len(ks))[:num]


def zeroshot_accuracy(image_embeddings, labels, classifier, ks=(1, 5), block_size=256):
    """``{"top1": ..., "top5": ...}`` (one ``top{k}`` per k): the fraction of images whose
    label is among the k classifier rows of highest cosine similarity; labels -1 are left
    out (NaN when no image has a label)."""
    labels = np.asarray(labels)
    classes = np.arange(classifier.shape[0])
    hits = np.asarray(topk_hits(jnp.asarray(image_embeddings), jnp.asarray(labels),
                                jnp.asarray(classifier), jnp.asarray(classes), tuple(ks),
                                block_size))
    scored = hits[labels >= 0]
    return {f"top{k}": float(np.mean(scored[:, j])) if len(scored) else float("nan")
            for j, k in enumerate(ks)}


def retrieval_recall(image_embeddings, text_embeddings, text_to_image, ks=(1, 5, 10),
                     block_size=256, image_groups=None):
    """``i2t_r{k}`` and ``t2i_r{k}`` for every k: image->text and text->image recall@k.

    ``text_to_image`` (Nt,): the image (row of ``image_embeddings``) that each text describes;
    an image may have several texts. Images without a text are left out of ``i2t``, texts
    with ``text_to_image`` -1 out of ``t2i``. ``image_groups`` (Ni,), if given: images of one
    group share their texts (pictures of one name), ``text_to_image`` then names a group, and
    a text's hit is any image of its group.
    """
    images, texts = jnp.asarray(image_embeddings), jnp.asarray(text_embeddings)
    owner = np.asarray(text_to_image)
    image_ids = np.arange(images.shape[0]) if image_groups is None else np.asarray(image_groups)
    ks = tuple(ks)
    i2t = np.asarray(topk_hits(images, jnp.asarray(image_ids), texts, jnp.asarray(owner), ks,
                               block_size))
    t2i = np.asarray(topk_hits(texts, jnp.asarray(owner), images, jnp.asarray(image_ids), ks,
                               block_size))
    i2t, t2i = i2t[np.isin(image_ids, owner)], t2i[owner >= 0]
    results = {}
    for name, hits in (("i2t", i2t), ("t2i", t2i)):
        for j, k in enumerate(ks):
            results[f"{name}_r{k}"] = float(np.mean(hits[:, j]))
    return results


def field(data, name):
    """``data[name]`` of a dict, ``data.name`` of any other object."""
    return data[name] if isinstance(data, Mapping) else getattr(data, name)


@evaluator("zeroshot")
def zeroshot(context, settings):
    """Zero-shot top-1/top-5 of the ``split`` (default "test") images against the class
    prompts: ``zeroshot_top1``, ``zeroshot_top5`` and ``zeroshot_majority``, the accuracy of
    always answering the most frequent label (the chance level to beat)."""
    split = settings.get("split", "test")
    data, prompts = context.image_text(split), context.class_prompt_embeddings(split)
    labels = None if data is None or prompts is None else field(data, "labels")
    scored = [] if labels is None else np.asarray(labels)[np.asarray(labels) >= 0]
    if not len(scored):
        return {}
    accuracy = zeroshot_accuracy(field(data, "image_embeddings"), labels,
                                 zeroshot_classifier(prompts), ks=(1, 5),
                                 block_size=settings.get("block_size", 256))
    results = {f"zeroshot_{key}": value for key, value in accuracy.items()}
    results["zeroshot_majority"] = float(np.max(np.bincount(scored)) / len(scored))
    return results


@evaluator("retrieval")
def retrieval(context, settings):
    """Image<->text recall@1/5/10 on the ``split`` (default "test") pairs: ``i2t_r1``,
    ``i2t_r5``, ``i2t_r10``, ``t2i_r1``, ``t2i_r5``, ``t2i_r10``."""
    data = context.image_text(settings.get("split", "test"))
    texts = None if data is None else field(data, "text_embeddings")
    if texts is None or not len(texts):
        return {}
    groups = data.get("image_groups") if isinstance(data, Mapping) else getattr(
        data, "image_groups", None)
    return retrieval_recall(field(data, "image_embeddings"), texts, field(data, "text_to_image"),
                            block_size=settings.get("block_size", 256), image_groups=groups)
