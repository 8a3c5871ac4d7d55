"""Deep InfoMax's local-global estimators and CURL's bilinear InfoNCE against float64 NumPy
(value and gradient), the JSD form against a transcription of rdevon/DIM's
``fenchel_dual_loss`` and AMDIM's stabilisers against one of amdim-public's
``NCE_MI_MULTI._model_scores`` (torch, when installed)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import numeric_grad

from cl_jax.losses.mutual_information import bilinear_info_nce, dim_local_global

B, M, D = 4, 5, 3


def sample(seed=0, scale=1.5):
    rng = np.random.default_rng(seed)
    local = rng.normal(size=(B, M, D)) * scale
    global_ = rng.normal(size=(B, D)) * scale
    mask = rng.random((B, M)) < 0.7
    mask[:, 0] = True
    return local.astype(np.float32), global_.astype(np.float32), mask


def softplus(x):
    return np.logaddexp(0.0, x)


def jsd_numpy(local, global_, mask):
    """Loops over every (position, global) pair, IS-BERT's sums and divisors."""
    local, global_ = local.astype(np.float64), global_.astype(np.float64)
    pos, neg, n = 0.0, 0.0, 0
    for b in range(B):
        for m in range(M):
            if not mask[b, m]:
                continue
            n += 1
            for c in range(B):
                t = local[b, m] @ global_[c]
                if c == b:
                    pos += math.log(2) - softplus(-t)
                else:
                    neg += softplus(-t) + t - math.log(2)
    return neg / (n * (B - 1)) - pos / n


def nce_numpy(local, global_, mask):
    local, global_ = local.astype(np.float64), global_.astype(np.float64)
    terms = []
    for b in range(B):
        negatives = [local[c, n] @ global_[b] for c in range(B) for n in range(M)
                     if c != b and mask[c, n]]
        for m in range(M):
            if mask[b, m]:
                logits = np.array([local[b, m] @ global_[b], *negatives])
                terms.append(np.log(np.sum(np.exp(logits))) - logits[0])
    return np.mean(terms)


def dv_numpy(local, global_, mask):
    """Donsker-Varadhan: mean positive score, log of the mean exp of every negative pair."""
    local, global_ = local.astype(np.float64), global_.astype(np.float64)
    positives, negatives = [], []
    for b in range(B):
        for m in range(M):
            if mask[b, m]:
                for c in range(B):
                    (positives if c == b else negatives).append(local[b, m] @ global_[c])
    return -np.mean(positives) + np.log(np.mean(np.exp(negatives)))


@pytest.mark.parametrize("measure,reference", [("jsd", jsd_numpy), ("dv", dv_numpy),
                                               ("nce", nce_numpy)])
def test_matches_float64_numpy_with_a_mask(measure, reference):
    local, global_, mask = sample()
    loss = jax.jit(dim_local_global, static_argnames="measure")(local, global_, mask,
                                                                measure=measure)
    np.testing.assert_allclose(float(loss), reference(local, global_, mask), rtol=1e-5)
    full = np.ones_like(mask)
    np.testing.assert_allclose(float(dim_local_global(local, global_, measure=measure)),
                               reference(local, global_, full), rtol=1e-5)


def test_a_masked_position_changes_nothing_and_gets_no_gradient():
    local, global_, mask = sample(1)
    value_and_grad = jax.jit(jax.value_and_grad(dim_local_global, argnums=(0, 1)),
                             static_argnames="measure")
    for measure in ("jsd", "dv", "nce"):
        base, grads = value_and_grad(local, global_, mask, measure=measure)
        g_local, g_global = map(np.asarray, grads)
        poisoned = np.where(mask[..., None], local, np.nan)
        poisoned[0, ~mask[0]] = np.inf
        value, (p_local, p_global) = value_and_grad(poisoned, global_, mask, measure=measure)
        assert float(value) == float(base)
        assert np.all(np.isfinite(g_local)) and np.all(np.isfinite(g_global))
        np.testing.assert_array_equal(p_local, g_local)
        np.testing.assert_array_equal(p_global, g_global)
        assert np.all(g_local[~mask] == 0) and np.abs(g_local[mask]).sum() > 0


def test_jsd_constants_and_the_direction_of_the_gradient():
    # All scores 0: each expectation is exactly 0 (the log 2 shift).
    zeros = dim_local_global(jnp.zeros((B, M, D)), jnp.zeros((B, D)))
    assert float(zeros) == 0.0
    # Own sentence aligned, the others orthogonal: large positive scores only on the diagonal.
    global_ = 4.0 * np.eye(B, D + B)
    local = np.repeat(global_[:, None, :], M, axis=1)
    aligned = float(dim_local_global(local, global_))
    # E_pos -> log 2 - softplus(-16), E_neg = softplus(0) - log 2 = 0.
    np.testing.assert_allclose(aligned, -(math.log(2) - softplus(-16.0)), rtol=1e-6)
    local_shuffled = np.roll(local, 1, axis=0)
    assert float(dim_local_global(local_shuffled, global_)) > 0 > aligned


def fenchel_dual_loss_torch(torch, local_map, m):
    """rdevon/DIM ``cortex_DIM/functions/dim_losses.py`` ``fenchel_dual_loss`` with
    measure 'JSD' (``gan_losses.get_positive_expectation`` / ``get_negative_expectation``),
    transcribed: ``local_map`` (DIM's ``l``: N, units, n_locals), ``m`` (N, units, n_multis)."""
    import torch.nn.functional as F

    n, units, n_locals = local_map.size()
    n_multis = m.size(2)
    local_map = local_map.permute(0, 2, 1).reshape(-1, units)
    m = m.permute(0, 2, 1).reshape(-1, units)
    u = torch.mm(m, local_map.t()).reshape(n, n_multis, n, n_locals).permute(0, 2, 3, 1)
    mask = torch.eye(n, dtype=u.dtype)
    n_mask = 1 - mask
    log_2 = math.log(2.0)
    e_pos = (log_2 - F.softplus(-u)).mean(2).mean(2)
    e_neg = (F.softplus(-u) + u - log_2).mean(2).mean(2)
    e_pos = (e_pos * mask).sum() / mask.sum()
    e_neg = (e_neg * n_mask).sum() / n_mask.sum()
    return e_neg - e_pos


def isbert_local_global_torch(torch, local, global_, lengths):
    """yanzhangnlp/IS-BERT ``MutualInformationLoss``: the first ``lengths[b]`` tokens of each
    sentence concatenated, ``create_masks`` and ``local_global_loss_`` with 'JSD'."""
    import torch.nn.functional as F

    l_enc = torch.cat([local[b, :n] for b, n in enumerate(lengths)])
    pos_mask = torch.zeros((sum(lengths), len(lengths)), dtype=l_enc.dtype)
    start = 0
    for b, n in enumerate(lengths):
        pos_mask[start:start + n, b] = 1.0
        start += n
    neg_mask = 1 - pos_mask
    res = torch.mm(l_enc, global_.t())
    num_nodes, num_graphs = pos_mask.shape
    log_2 = math.log(2.0)
    e_pos = (log_2 - F.softplus(-(res * pos_mask))).sum() / num_nodes
    q = res * neg_mask
    e_neg = (F.softplus(-q) + q - log_2).sum() / (num_nodes * (num_graphs - 1))
    return e_neg - e_pos


def test_jsd_matches_the_torch_references():
    torch = pytest.importorskip("torch")
    local, global_, mask = sample(2)
    dim = fenchel_dual_loss_torch(torch, torch.tensor(local, dtype=torch.float64).permute(0, 2, 1),
                                  torch.tensor(global_, dtype=torch.float64)[:, :, None])
    np.testing.assert_allclose(float(dim_local_global(local, global_)), float(dim), rtol=1e-5)
    lengths = [3, 5, 1, 4]  # IS-BERT's masks are prefixes: the non-pad tokens
    prefix = np.arange(M)[None, :] < np.array(lengths)[:, None]
    isbert = isbert_local_global_torch(torch, torch.tensor(local, dtype=torch.float64),
                                       torch.tensor(global_, dtype=torch.float64), lengths)
    np.testing.assert_allclose(float(dim_local_global(local, global_, prefix)), float(isbert),
                               rtol=1e-5)


def test_gradients_match_float64_numpy():
    local, global_, mask = sample(3)
    for measure, reference in (("jsd", jsd_numpy), ("dv", dv_numpy), ("nce", nce_numpy)):
        grads = jax.grad(dim_local_global, argnums=(0, 1))(local, global_, mask,
                                                           measure=measure)
        expected_local = numeric_grad(lambda x, r=reference: r(x, global_, mask), local)
        expected_global = numeric_grad(lambda g, r=reference: r(local, g, mask), global_)
        np.testing.assert_allclose(grads[0], expected_local, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(grads[1], expected_global, rtol=1e-4, atol=1e-6)


def amdim_nce_numpy(local, global_, clip, penalty):
    """AMDIM's global -> local NCE, written from the paper: every score clipped, each location
    of the image's own map against every location of the other images' maps, plus the
    penalty on the squared raw scores."""
    local, global_ = local.astype(np.float64), global_.astype(np.float64)
    raw = np.einsum("bmd,cd->bmc", local, global_)
    clipped = clip * np.tanh(raw / clip)
    terms = []
    for b in range(B):
        negatives = [clipped[c, n, b] for c in range(B) for n in range(M) if c != b]
        for m in range(M):
            logits = np.array([clipped[b, m, b], *negatives])
            terms.append(np.log(np.sum(np.exp(logits))) - logits[0])
    return np.mean(terms) + penalty * np.mean(raw**2)


def test_amdim_clip_and_penalty_match_float64_numpy():
    local, global_, _ = sample(4, scale=3.0)  # scores up to about 40: the clip matters
    loss = jax.jit(dim_local_global, static_argnames=("measure", "tanh_clip"))
    value = loss(local, global_, measure="nce", tanh_clip=20.0, score_penalty=0.05)
    np.testing.assert_allclose(float(value), amdim_nce_numpy(local, global_, 20.0, 0.05),
                               rtol=1e-5)
    unclipped = float(dim_local_global(local, global_, measure="nce"))
    np.testing.assert_allclose(unclipped, amdim_nce_numpy(local, global_, 1e9, 0.0), rtol=1e-5)
    assert abs(float(value) - unclipped) > 1e-2
    grad = jax.grad(dim_local_global)(local, global_, measure="nce", tanh_clip=20.0,
                                      score_penalty=0.05)
    expected = numeric_grad(lambda x: amdim_nce_numpy(x, global_, 20.0, 0.05), local)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


def amdim_model_scores_torch(torch, r_src, r_trg, tclip):
    """amdim-public ``costs.py`` ``NCE_MI_MULTI._model_scores`` and ``_loss_g2l``,
    transcribed for one device: ``r_src`` (n_batch, n_rkhs) globals, ``r_trg``
    (n_rkhs, n_batch * n_locs) locals; without its 1 / sqrt(n_rkhs) scaling (the caller's)."""
    n_batch = r_src.size(0)
    mask_mat = torch.eye(n_batch, dtype=r_src.dtype)
    n_locs = r_trg.size(1) // n_batch
    mask_pos = mask_mat.unsqueeze(dim=2).expand(-1, -1, n_locs)
    mask_neg = 1.0 - mask_pos
    raw_scores = torch.mm(r_src, r_trg).reshape(n_batch, n_batch, n_locs)
    lgt_reg = 5e-2 * (raw_scores**2.0).mean()
    raw_scores = tclip * torch.tanh(raw_scores / tclip)
    pos_scores = (mask_pos * raw_scores).sum(dim=1)
    neg_scores = ((mask_neg * raw_scores) - (tclip * mask_pos)).reshape(n_batch, -1)
    mask_neg = mask_neg.reshape(n_batch, -1)
    neg_maxes = torch.max(neg_scores, dim=1, keepdim=True)[0]
    neg_sumexp = (mask_neg * torch.exp(neg_scores - neg_maxes)).sum(dim=1, keepdim=True)
    all_logsumexp = torch.log(torch.exp(pos_scores - neg_maxes) + neg_sumexp)
    nce_scores = (pos_scores - neg_maxes) - all_logsumexp
    return -nce_scores.mean() + lgt_reg


def test_amdim_options_match_the_torch_reference():
    torch = pytest.importorskip("torch")
    local, global_, _ = sample(5, scale=3.0)
    r_trg = torch.tensor(local, dtype=torch.float64).permute(2, 0, 1).reshape(D, -1)
    reference = amdim_model_scores_torch(torch, torch.tensor(global_, dtype=torch.float64),
                                         r_trg, 20.0)
    value = dim_local_global(local, global_, measure="nce", tanh_clip=20.0,
                             score_penalty=0.05)
    np.testing.assert_allclose(float(value), float(reference), rtol=1e-5)


def bilinear_numpy(anchors, positives, w):
    logits = anchors.astype(np.float64) @ w.astype(np.float64) @ positives.astype(np.float64).T
    terms = [np.log(np.sum(np.exp(row))) - row[i] for i, row in enumerate(logits)]
    return np.mean(terms)


def test_bilinear_info_nce_matches_float64_numpy():
    rng = np.random.default_rng(6)
    anchors, positives = (rng.normal(size=(5, 3)).astype(np.float32) for _ in range(2))
    w = rng.normal(size=(3, 3)).astype(np.float32)
    value, grads = jax.jit(jax.value_and_grad(bilinear_info_nce, argnums=(0, 1, 2)))(
        anchors, positives, w)
    np.testing.assert_allclose(float(value), bilinear_numpy(anchors, positives, w), rtol=1e-5)
    for arg, grad in enumerate(grads):
        def f(x, arg=arg):
            args = [anchors, positives, w]
            args[arg] = x
            return bilinear_numpy(*args)
        np.testing.assert_allclose(grad, numeric_grad(f, (anchors, positives, w)[arg]),
                                   rtol=1e-4, atol=1e-6)
    # W = identity * s on matched unit pairs: the loss falls as s grows.
    eye = np.eye(3, dtype=np.float32)
    assert float(bilinear_info_nce(eye, eye, 10 * eye)) < float(bilinear_info_nce(eye, eye, eye))
    with pytest.raises(AssertionError):
        bilinear_info_nce(anchors, positives, np.eye(4, dtype=np.float32))
