"""Every loss that has a counterpart in lightly or pytorch-metric-learning (PML) against it: value
and gradient with respect to every differentiable input, float64 on both sides, small batches.

Optional: a test whose peer (torch, lightly, pytorch-metric-learning; the ``peers`` extra) is
not installed is skipped. The settings used here are the ones ``docs/losses.md`` names, so the
table there stays true. Pinned against lightly 1.6.0 and pytorch-metric-learning 2.9.0.
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_jax import losses

RTOL, ATOL = 1e-9, 1e-12


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    # Python floats inside the peers (lightly's DINO temperature, its memory bank and centre
    # buffers) become float64 tensors instead of float32 ones.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield torch
    torch.set_default_dtype(previous)


@pytest.fixture
def lightly(torch):
    return pytest.importorskip("lightly.loss")


@pytest.fixture
def pml(torch):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances, losses, miners, reducers

    return SimpleNamespace(distances=distances, losses=losses, miners=miners, reducers=reducers)


def check(jax_loss, torch_loss, *arrays):
    """``jax_loss(*arrays)`` and ``torch_loss(*tensors)`` agree in float64: the value and the
    gradient with respect to each array."""
    import torch

    with jax.enable_x64(True):
        value_and_grad = jax.value_and_grad(jax_loss, argnums=tuple(range(len(arrays))))
        value, grads = jax.jit(value_and_grad)(*(jnp.asarray(a, jnp.float64) for a in arrays))
        value, grads = float(value), [np.asarray(g) for g in grads]
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    expected = torch_loss(*tensors).sum()  # some peers return shape (1,)
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=RTOL, atol=ATOL)
    for g, t in zip(grads, tensors, strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=RTOL, atol=ATOL)


def views(seed, n=6, d=5):
    """Two correlated views of n examples, rows of different norms."""
    rng = np.random.RandomState(seed)
    z1 = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=(n, 1))
    return z1, z1 + 0.6 * rng.normal(size=(n, d))


def labelled(seed, n=9, d=4):
    """Embeddings and labels with repeated classes and one singleton (label 3)."""
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n, d)), np.array([0, 1, 2, 0, 1, 2, 0, 1, 3])


# ---- lightly ----


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_is_lightly_ntxent(lightly, temperature):
    check(lambda a, b: losses.nt_xent(a, b, temperature=temperature),
          lightly.NTXentLoss(temperature=temperature), *views(0))


def test_info_nce_with_queue_is_lightly_ntxent_with_memory_bank(lightly, torch):
    query, key = views(1)
    queue = np.random.RandomState(2).normal(size=(7, query.shape[1]))
    queue /= np.linalg.norm(queue, axis=1, keepdims=True)  # lightly uses the bank as it is
    with pytest.raises(ValueError, match="feature"):
        lightly.NTXentLoss(memory_bank_size=7)  # lightly 1.6 wants (M, D)
    peer = lightly.NTXentLoss(temperature=0.2, memory_bank_size=queue.shape)
    peer.memory_bank.bank = torch.tensor(queue)  # read before the batch is enqueued
    check(lambda q, k: losses.info_nce(q, k, jnp.asarray(queue), temperature=0.2), peer,
          query, key)


def test_dcl_is_lightly_dcl(lightly):
    check(lambda a, b: losses.dcl(a, b, temperature=0.2), lightly.DCLLoss(temperature=0.2),
          *views(3))


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")  # lightly's
def test_dclw_is_lightly_dclw(lightly):
    check(lambda a, b: losses.dclw(a, b, temperature=0.2, sigma=0.7),
          lightly.DCLWLoss(temperature=0.2, sigma=0.7), *views(4))


def test_byol_and_simsiam_are_lightly_negative_cosine(lightly):
    peer = lightly.NegativeCosineSimilarity()
    check(losses.simsiam, peer, *views(5))
    check(losses.byol, lambda p, z: 2.0 + 2.0 * peer(p, z), *views(5))


def test_barlow_twins_is_lightly(lightly):
    check(lambda a, b: losses.barlow_twins(a, b, lambda_=0.0051),
          lightly.BarlowTwinsLoss(lambda_param=0.0051), *views(6, n=8, d=4))


def test_vicreg_is_lightly(lightly):
    check(lambda a, b: losses.vicreg(a, b, 20.0, 15.0, 2.0),
          lightly.VICRegLoss(lambda_param=20.0, mu_param=15.0, nu_param=2.0),
          *views(7, n=8, d=4))


def crop_scores(seed, n_crops=4, batch=6, k=5):
    """SwAV-like scores: normalised features against normalised prototypes, in [-1, 1]."""
    rng = np.random.RandomState(seed)
    feats = rng.normal(size=(n_crops, batch, 3))
    protos = rng.normal(size=(k, 3))
    feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
    return feats @ (protos / np.linalg.norm(protos, axis=-1, keepdims=True)).T


def test_sinkhorn_knopp_is_lightly_sinkhorn(lightly, torch):
    from lightly.loss.swav_loss import sinkhorn

    scores = crop_scores(8)[0]
    with jax.enable_x64(True):
        codes = np.asarray(losses.sinkhorn_knopp(scores, epsilon=0.05, num_iters=3))
    expected = sinkhorn(torch.tensor(scores), iterations=3, epsilon=0.05).numpy()
    np.testing.assert_allclose(codes, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("with_queue", [False, True])
def test_swav_is_lightly(lightly, torch, with_queue):
    scores = crop_scores(9)  # crops 0, 1 high resolution, 2, 3 low resolution
    queue = crop_scores(10, n_crops=2, batch=4) if with_queue else None
    peer = lightly.SwaVLoss(temperature=0.2, sinkhorn_epsilon=0.05)

    def swav(*crops):
        q = None if queue is None else list(jnp.asarray(queue))
        return losses.swav(crops, codes_from=(0, 1), temperature=0.2, queue_scores=q)

    def lightly_swav(*crops):
        q = None if queue is None else list(torch.tensor(queue))
        return peer(list(crops[:2]), list(crops[2:]), q)

    check(swav, lightly_swav, *scores)


def test_dino_and_center_update_are_lightly(lightly, torch):
    rng = np.random.RandomState(11)
    teacher, center = rng.normal(size=(2, 6, 7)), rng.normal(size=7)
    peer = lightly.DINOLoss(output_dim=7, teacher_temp=0.05, student_temp=0.2,
                            center_momentum=0.8)
    peer.center = torch.tensor(center).reshape(1, 1, -1)
    # lightly does not detach the teacher: the teacher enters as a constant on both sides.
    check(lambda *s: losses.dino(s, jnp.asarray(teacher), jnp.asarray(center), 0.2, 0.05),
          lambda *s: peer(list(torch.tensor(teacher)), list(s)),
          *rng.normal(size=(4, 6, 7)))
    with jax.enable_x64(True):
        new_center = np.asarray(losses.dino_center_update(center, teacher, momentum=0.8))
    # ``check`` ran the peer's forward once, which updates its centre.
    np.testing.assert_allclose(new_center, peer.center.reshape(-1).numpy(), rtol=RTOL)
    t = torch.tensor(teacher, requires_grad=True)
    peer(list(t), list(torch.tensor(rng.normal(size=(4, 6, 7))))).backward()
    assert t.grad.abs().max() > 0  # lightly lets the teacher be trained through


def test_lightly_has_no_supcon(lightly):
    assert not hasattr(lightly, "SupConLoss")  # docs/losses.md: only PML's


# ---- pytorch-metric-learning ----


def test_nt_xent_is_pml_ntxent(pml, torch):
    z1, z2 = views(12)
    labels = torch.arange(len(z1)).repeat(2)
    peer = pml.losses.NTXentLoss(temperature=0.3)
    check(lambda a, b: losses.nt_xent(a, b, temperature=0.3),
          lambda a, b: peer(torch.cat([a, b]), labels), z1, z2)
    check(lambda a, b: losses.nt_xent(a, b, temperature=0.3),
          pml.losses.SelfSupervisedLoss(peer), z1, z2)


def test_info_nce_in_batch_is_pml_asymmetric_ntxent(pml):
    peer = pml.losses.SelfSupervisedLoss(pml.losses.NTXentLoss(temperature=0.3),
                                         symmetric=False)
    check(lambda q, k: losses.info_nce(q, k, temperature=0.3), peer, *views(13))


@pytest.mark.parametrize("num_views", [1, 2])
def test_supcon_is_pml(pml, torch, num_views):
    emb, labels = labelled(14, d=5)  # with one view the singleton has no positive
    noisy = emb + 0.5 * np.random.RandomState(0).normal(size=emb.shape)
    features = np.stack([emb, noisy], axis=1)[:, :num_views]  # (N, V, D)
    peer = pml.losses.SupConLoss(temperature=0.2)
    tiled = torch.tensor(np.tile(labels, num_views))
    check(lambda f: losses.supcon(f, jnp.asarray(labels), temperature=0.2),
          lambda f: peer(f.transpose(0, 1).reshape(-1, f.shape[-1]), tiled), features)


def test_triplet_margin_all_is_pml(pml, torch):
    emb, labels = labelled(15)
    peer = pml.losses.TripletMarginLoss(
        margin=0.8, triplets_per_anchor="all", reducer=pml.reducers.MeanReducer(),
        distance=pml.distances.LpDistance(normalize_embeddings=False))
    check(lambda x: losses.triplet_margin(x, jnp.asarray(labels), margin=0.8, mining="all"),
          lambda x: peer(x, torch.tensor(labels)), emb)


def test_triplet_margin_hard_is_pml_batch_hard(pml, torch):
    emb, labels = labelled(16)
    emb *= np.linspace(0.3, 3.0, len(emb))[:, None]  # norms matter: unnormalised distances
    distance = pml.distances.LpDistance(normalize_embeddings=False)
    peer = pml.losses.TripletMarginLoss(margin=0.8, reducer=pml.reducers.MeanReducer(),
                                        distance=distance)
    miner = pml.miners.BatchHardMiner(distance=distance)
    t_labels = torch.tensor(labels)

    def jax_loss(x):
        return losses.triplet_margin(x, jnp.asarray(labels), margin=0.8, mining="hard")

    check(jax_loss, lambda x: peer(x, t_labels, miner(x, t_labels)), emb)
    # The default miner ranks normalised distances and picks other triplets here.
    x = torch.tensor(emb)
    default = pml.miners.BatchHardMiner()(x, t_labels)
    assert not all(torch.equal(a, b) for a, b in zip(default, miner(x, t_labels), strict=True))


def test_lifted_structured_is_pml(pml, torch):
    emb, labels = labelled(17)
    peer = pml.losses.LiftedStructureLoss(
        neg_margin=1.5, distance=pml.distances.LpDistance(normalize_embeddings=False))
    check(lambda x: losses.lifted_structured(x, jnp.asarray(labels), margin=1.5),
          lambda x: peer(x, torch.tensor(labels)), emb)


def test_n_pair_is_pml(pml, torch):
    anchors, positives = views(18)
    labels = torch.arange(len(anchors)).repeat(2)
    peer = pml.losses.NPairsLoss(
        distance=pml.distances.DotProductSimilarity(normalize_embeddings=False))
    check(losses.n_pair, lambda a, p: peer(torch.cat([a, p]), labels), anchors, positives)
    # PML's default DotProductSimilarity normalises: cosines, another loss.
    default = pml.losses.NPairsLoss()(torch.tensor(np.concatenate([anchors, positives])),
                                      labels)
    with jax.enable_x64(True):
        assert abs(default.item() - float(losses.n_pair(anchors, positives))) > 1e-3


def test_soft_nearest_neighbor_is_pml_nca(pml, torch):
    emb, labels = labelled(19)
    peer = pml.losses.NCALoss(softmax_scale=1 / 2.5, distance=pml.distances.LpDistance(
        normalize_embeddings=False, power=2))
    check(lambda x: losses.soft_nearest_neighbor(x, jnp.asarray(labels), temperature=2.5),
          lambda x: peer(x, torch.tensor(labels)), emb)


def test_vicreg_is_pml(pml):
    peer = pml.losses.VICRegLoss(invariance_lambda=20.0, variance_mu=15.0, covariance_v=2.0)
    check(lambda a, b: losses.vicreg(a, b, 20.0, 15.0, 2.0),
          lambda a, b: peer(a, ref_emb=b), *views(20, n=8, d=4))


def test_contrastive_margin_from_pml_pair_terms(pml, torch):
    """PML's ``ContrastiveLoss`` differs as docs/losses.md says: its per-pair terms (no
    reduction) are ``d`` and ``max(0, margin - d)``; squared and averaged over all pairs they
    give ``contrastive_margin``, while its default reduction gives another number."""
    emb, labels = labelled(21)
    t_labels = torch.tensor(labels)
    kwargs = dict(pos_margin=0, neg_margin=1.5,
                  distance=pml.distances.LpDistance(normalize_embeddings=False))
    peer = pml.losses.ContrastiveLoss(reducer=pml.reducers.DoNothingReducer(), **kwargs)

    def from_pair_terms(x):
        terms = peer(x, t_labels)  # ordered pairs i != j, each unordered pair twice
        squares = terms["pos_loss"]["losses"] ** 2, terms["neg_loss"]["losses"] ** 2
        return sum(s.sum() for s in squares) / (len(x) * (len(x) - 1))

    def jax_loss(x):
        return losses.contrastive_margin(x, jnp.asarray(labels), margin=1.5)

    check(jax_loss, from_pair_terms, emb)
    default = pml.losses.ContrastiveLoss(**kwargs)(torch.tensor(emb), t_labels)
    with jax.enable_x64(True):
        assert abs(default.item() - float(jax_loss(emb))) > 1e-3
