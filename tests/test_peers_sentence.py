"""The sentence-embedding losses against sentence-transformers and against a torch transcription
of SimCSE's ``cl_forward`` loss: value and gradient with respect to every embedding, float64 on
both sides, small batches.

Optional: skipped without torch (all tests) or sentence-transformers (all but SimCSE's).
Pinned against sentence-transformers 6.2.0 (its ``sentence_transformer.losses`` package; older
versions differ as ``cl_jax/losses/sentence.py`` says) and torch 2.14.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_jax import losses

RTOL, ATOL = 1e-9, 1e-12


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # SimCSE's weight matrix from Python floats
    yield torch
    torch.set_default_dtype(previous)


@pytest.fixture
def st_losses(torch):
    pytest.importorskip("sentence_transformers", minversion="6.0")
    from sentence_transformers.sentence_transformer import losses as st_losses

    return st_losses


def check(jax_loss, torch_loss, *arrays):
    """``jax_loss(*arrays)`` and ``torch_loss(*tensors)`` agree in float64: the value and the
    gradient with respect to each array. Prints the largest differences (``pytest -s``)."""
    import torch

    with jax.enable_x64(True):
        value_and_grad = jax.value_and_grad(jax_loss, argnums=tuple(range(len(arrays))))
        value, grads = jax.jit(value_and_grad)(*(jnp.asarray(a, jnp.float64) for a in arrays))
        value, grads = float(value), [np.asarray(g) for g in grads]
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    expected = torch_loss(*tensors)
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=RTOL, atol=ATOL)
    for g, t in zip(grads, tensors, strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=RTOL, atol=ATOL)
    grad_diff = max(np.abs(g - t.grad.numpy()).max() for g, t in zip(grads, tensors, strict=True))
    print(f"max |diff|: value {abs(value - expected.item()):.2e}, gradients {grad_diff:.2e}")


def columns(seed, n=6, d=5, count=3):
    """``count`` (n, d) arrays, the later ones near the first, rows of different norms."""
    rng = np.random.RandomState(seed)
    base = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=(n, 1))
    return [base] + [base + 0.8 * rng.normal(size=(n, d)) for _ in range(count - 1)]


# ---- SimCSE: a transcription of princeton-nlp/SimCSE simcse/models.py cl_forward ----


def simcse_cl_forward_loss(torch, z1, z2, z3, temp, hard_negative_weight):
    """The loss of ``cl_forward`` (one process; ``num_sent`` 3 when ``z3`` is given)."""
    sim = torch.nn.CosineSimilarity(dim=-1)
    cos_sim = sim(z1.unsqueeze(1), z2.unsqueeze(0)) / temp
    if z3 is not None:
        z1_z3_cos = sim(z1.unsqueeze(1), z3.unsqueeze(0)) / temp
        cos_sim = torch.cat([cos_sim, z1_z3_cos], 1)
    labels = torch.arange(cos_sim.size(0)).long()
    if z3 is not None:
        m = z1_z3_cos.size(-1)
        weights = torch.tensor(
            [[0.0] * (cos_sim.size(-1) - m) + [0.0] * i + [hard_negative_weight]
             + [0.0] * (m - i - 1) for i in range(m)])
        cos_sim = cos_sim + weights
    return torch.nn.CrossEntropyLoss()(cos_sim, labels)


@pytest.mark.parametrize("temperature,weight", [(0.05, 0.0), (0.05, 1.3), (0.2, -0.7)])
def test_simcse_is_cl_forward_with_hard_negatives(torch, temperature, weight):
    check(lambda a, b, c: losses.simcse(a, b, c, temperature=temperature,
                                        hard_negative_weight=weight),
          lambda a, b, c: simcse_cl_forward_loss(torch, a, b, c, temperature, weight),
          *columns(0))


def test_simcse_is_cl_forward_without_hard_negatives(torch):
    check(lambda a, b: losses.simcse(a, b, temperature=0.05),
          lambda a, b: simcse_cl_forward_loss(torch, a, b, None, 0.05, 0.0), *columns(1, count=2))


# ---- sentence-transformers ----


@pytest.mark.parametrize("num_negatives", [0, 1, 2])
def test_multiple_negatives_ranking_is_st(st_losses, num_negatives):
    peer = st_losses.MultipleNegativesRankingLoss(model=None, scale=7.0)
    arrays = columns(2, count=2 + num_negatives)

    def jax_loss(anchor, positive, *negs):
        # (N, K, D): K negatives per anchor; the order of the candidates does not matter.
        negatives = jnp.stack(negs, axis=1) if negs else None
        return losses.multiple_negatives_ranking(anchor, positive, negatives, scale=7.0)

    check(jax_loss, lambda *cols: peer.compute_loss_from_embeddings(list(cols), None), *arrays)


@pytest.mark.filterwarnings("ignore:The MultipleNegativesSymmetricRankingLoss is deprecated")
@pytest.mark.parametrize("num_negatives", [0, 1])
def test_multiple_negatives_symmetric_ranking_is_st(st_losses, num_negatives):
    peer = st_losses.MultipleNegativesSymmetricRankingLoss(model=None)  # scale 20
    per_direction = st_losses.MultipleNegativesRankingLoss(
        model=None, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")

    def jax_loss(anchor, positive, *negs):
        negatives = negs[0] if negs else None
        return losses.multiple_negatives_ranking(anchor, positive, negatives, symmetric=True)

    for loss in (peer, per_direction):
        check(jax_loss, lambda *c, loss=loss: loss.compute_loss_from_embeddings(list(c), None),
              *columns(3, count=2 + num_negatives))


@pytest.mark.parametrize("scale", [20.0, 3.0])
def test_cosent_is_st(st_losses, torch, scale):
    scores = np.array([0.2, 0.8, 0.8, 0.5, 0.2, 1.0])  # with ties
    peer = st_losses.CoSENTLoss(model=None, scale=scale)
    check(lambda u, v: losses.cosent(u, v, jnp.asarray(scores), scale=scale),
          lambda u, v: peer.compute_loss_from_embeddings([u, v], torch.tensor(scores)),
          *columns(4, count=2))


def test_cosine_similarity_mse_is_st(st_losses, torch):
    scores = np.array([0.125, 0.875, 0.375, 0.0, 1.0, 0.625])  # it casts them to float32
    peer = st_losses.CosineSimilarityLoss(model=None)
    check(lambda u, v: losses.cosine_similarity_mse(u, v, jnp.asarray(scores)),
          lambda u, v: peer.compute_loss_from_embeddings([u, v], torch.tensor(scores)),
          *columns(5, count=2))


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "manhattan"])
@pytest.mark.parametrize("margin", [5.0, 1.0, 0.3])
def test_sentence_triplet_is_st(st_losses, distance, margin):
    metric = getattr(st_losses.TripletDistanceMetric, distance.upper())
    peer = st_losses.TripletLoss(model=None, distance_metric=metric, triplet_margin=margin)
    anchor, positive, negative = columns(6)
    negative[:2] = anchor[:2] + 3.0  # some triplets inactive at the smaller margins
    check(lambda a, p, n: losses.sentence_triplet(a, p, n, margin=margin, distance=distance),
          lambda a, p, n: peer.compute_loss_from_embeddings([a, p, n], None),
          anchor, positive, negative)


def test_sbert_softmax_features_feed_st_softmax_loss(st_losses, torch, monkeypatch):
    """SoftmaxLoss's classifier on ``sbert_softmax_features``: the same cross-entropy, so the
    features come in its order. Its encoder is bypassed: the columns are the embeddings."""
    from types import SimpleNamespace

    from sentence_transformers.sentence_transformer.losses import softmax

    monkeypatch.setattr(softmax, "embed_columns", lambda model, features: list(features))
    labels = np.array([0, 2, 1, 1, 0, 2])
    peer = softmax.SoftmaxLoss(SimpleNamespace(device="cpu"), embedding_dimension=5,
                               num_labels=3)
    w = peer.classifier.weight.detach().numpy()
    b = peer.classifier.bias.detach().numpy()

    def jax_loss(u, v):
        logits = losses.sbert_softmax_features(u, v) @ w.T + b
        log_p = jax.nn.log_softmax(logits)
        return -jnp.mean(log_p[jnp.arange(len(labels)), labels])

    check(jax_loss, lambda u, v: peer([u, v], torch.tensor(labels)), *columns(7, count=2))
