"""AMDIM (Bachman et al. 2019): the multiscale NCE loss against a float64 NumPy transcription of
amdim-public's ``NCE_MI_MULTI`` / ``LossMultiNCE`` (value and gradient wrt the embeddings), the
5->5 source read at one sampled location per image, the network's scales, config errors, and
real train steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch, tiny_config, train_steps

from cl_jax import train
from cl_jax.errors import ConfigError
from cl_jax.methods.amdim import source_locations

N_RKHS = 8


def nce_mi_multi(r_src, r_trg, tclip):
    """amdim-public ``costs.py`` ``NCE_MI_MULTI._model_scores`` / ``_loss_g2l``, float64:
    ``r_src`` (B, D), ``r_trg`` (B, M, D). Returns (loss_g2l, lgt_reg) for one direction."""
    n_batch, n_locs, n_rkhs = r_trg.shape
    mask_pos = np.repeat(np.eye(n_batch)[:, :, None], n_locs, axis=2)
    mask_neg = 1.0 - mask_pos
    r_trg = r_trg.transpose(2, 0, 1).reshape(n_rkhs, -1)  # (n_rkhs, n_batch * n_locs)
    raw = (r_src @ r_trg).reshape(n_batch, n_batch, n_locs) / n_rkhs ** 0.5
    lgt_reg = 5e-2 * np.mean(raw ** 2)
    if tclip:
        raw = tclip * np.tanh(raw / tclip)
    pos = (mask_pos * raw).sum(axis=1)  # (n_batch, n_locs)
    neg = (mask_neg * raw - (tclip or 0.0) * mask_pos).reshape(n_batch, -1)
    neg_max = neg.max(axis=1, keepdims=True)
    neg_sumexp = (mask_neg.reshape(n_batch, -1) * np.exp(neg - neg_max)).sum(axis=1,
                                                                             keepdims=True)
    all_logsumexp = np.log(np.exp(pos - neg_max) + neg_sumexp)
    nce = (pos - neg_max) - all_logsumexp
    return -nce.mean(), lgt_reg


def loss_multi_nce(emb, where, tclip):
    """amdim-public ``LossMultiNCE.forward`` + ``task_self_supervised.py``'s sum, float64:
    ``emb`` the two views' (r1, r5, r7); the 5->5 sources at ``where`` (2, B)."""
    rows = np.arange(len(where[0]))
    src = {(1, v): emb[v][0] for v in range(2)}
    src.update({(5, v): emb[v][1][rows, where[v]] for v in range(2)})
    trg = {(5, v): emb[v][1] for v in range(2)} | {(7, v): emb[v][2] for v in range(2)}
    parts, lgt_reg = {}, 0.0
    for s, t in ((1, 5), (1, 7), (5, 5)):
        (a, reg_a), (b, reg_b) = (nce_mi_multi(src[s, v], trg[t, 1 - v], tclip)
                                  for v in range(2))
        parts[f"nce_{s}t{t}"] = 0.5 * (a + b)
        lgt_reg += 0.5 * (reg_a + reg_b)
    parts["score_penalty"] = lgt_reg
    return sum(parts.values()), parts


@pytest.fixture(scope="module")
def setup():
    config = tiny_config("amdim")
    config.model.widths = (8, 16)  # "7": the 8x8 map, "5": the 4x4 map
    config.method.update(n_rkhs=N_RKHS, tclip=3.0)  # a clip that bites on these scores
    exp = train.create_experiment(config)
    state = jax.device_get(train.initial_state(exp))
    views = tuple(jnp.asarray(v) for v in random_batch(exp.config, 16)["views"][:2])
    outputs, _ = exp.method.forward(state.params, state.batch_stats, views)
    embeddings = [{k: np.asarray(o[k]) for k in ("r1", "r5", "r7")} for o in outputs]
    return exp, state, views, embeddings


def as64(embeddings):
    return [tuple(np.asarray(e[k], np.float64) for k in ("r1", "r5", "r7")) for e in embeddings]


def test_the_network_gives_the_three_scales_of_each_view(setup):
    exp, state, views, embeddings = setup
    assert [e["r1"].shape for e in embeddings] == [(16, N_RKHS)] * 2
    assert [e["r5"].shape for e in embeddings] == [(16, 16, N_RKHS)] * 2  # 4x4 locations
    assert [e["r7"].shape for e in embeddings] == [(16, 64, N_RKHS)] * 2  # 8x8 locations
    # The evaluated features are the encoder's pooled features.
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    features = exp.method.image_features(variables, views[0])
    enc = {"params": state.params["encoder"], "batch_stats": state.batch_stats["encoder"]}
    expected = exp.method.network.encoder.apply(enc, views[0], False)
    np.testing.assert_allclose(features, expected, rtol=1e-6)


def test_loss_is_amdim_publics_nce_mi_multi_in_float64(setup):
    exp, state, views, embeddings = setup
    method, rng = exp.method, jax.random.key(7)
    where = np.asarray(source_locations(rng, 16, 16))
    expected, parts = loss_multi_nce(as64(embeddings), where, tclip=3.0)
    total, aux = method.loss(state.params, state.batch_stats, {}, {"views": views}, rng, 0)
    assert float(total) == pytest.approx(expected, rel=1e-5)
    for name, value in parts.items():
        assert float(aux.metrics[name]) == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert parts["score_penalty"] > 1e-3 and aux.probe_views == 2
    assert aux.probe_logits.shape == (32, 10)

    # The gradient wrt every embedding, at sampled coordinates, against central differences.
    emb32 = [{k: jnp.asarray(v) for k, v in e.items()} for e in embeddings]
    grads = jax.grad(lambda e: method.objective(e, jnp.asarray(where))[0])(emb32)
    rng_np = np.random.RandomState(0)
    base = as64(embeddings)
    for v in range(2):
        for i, key in enumerate(("r1", "r5", "r7")):
            g = np.asarray(grads[v][key])
            assert np.abs(g).max() > 0, (v, key)
            for _ in range(6):
                idx = tuple(rng_np.randint(n) for n in g.shape)
                if key == "r5" and rng_np.rand() < 0.5:  # also a sampled source location
                    idx = (idx[0], int(where[v][idx[0]]), idx[2])
                eps = 1e-6
                shifted = []
                for sign in (1, -1):
                    emb = [list(t) for t in base]
                    emb[v][i] = emb[v][i].copy()
                    emb[v][i][idx] += sign * eps
                    shifted.append(loss_multi_nce(emb, where, 3.0)[0])
                numeric = (shifted[0] - shifted[1]) / (2 * eps)
                assert g[idx] == pytest.approx(numeric, rel=2e-3, abs=2e-5), (v, key, idx)


def test_tclip_zero_turns_the_clip_off_and_weights_scale_the_pairings(setup):
    exp, state, views, embeddings = setup
    where = np.asarray(source_locations(jax.random.key(1), 16, 16))
    method = exp.method
    emb32 = [{k: jnp.asarray(v) for k, v in e.items()} for e in embeddings]
    _, parts = loss_multi_nce(as64(embeddings), where, tclip=0.0)
    _, clipped = loss_multi_nce(as64(embeddings), where, tclip=3.0)
    assert abs(parts["nce_1t5"] - clipped["nce_1t5"]) > 1e-3  # the clip matters here
    method.config.update(dict(tclip=0.0, weight_1t7=0.0, weight_5t5=2.0))
    try:
        total, metrics = method.objective(emb32, jnp.asarray(where))
    finally:
        method.config.update(dict(tclip=3.0, weight_1t7=1.0, weight_5t5=1.0))
    assert "nce_1t7" not in metrics
    for name in ("nce_1t5", "nce_5t5"):
        assert float(metrics[name]) == pytest.approx(parts[name], rel=1e-4), name
    # The regulariser of the pairings kept, each at its weight (the 1t7 one dropped).
    e, rows, reg = as64(embeddings), np.arange(16), {}
    for scale in (1, 5):
        srcs = [e[v][0] if scale == 1 else e[v][1][rows, where[v]] for v in range(2)]
        reg[f"{scale}t5"] = 0.5 * sum(nce_mi_multi(srcs[v], e[1 - v][1], 0.0)[1]
                                      for v in range(2))
    penalty = reg["1t5"] + 2 * reg["5t5"]
    assert float(metrics["score_penalty"]) == pytest.approx(penalty, rel=1e-4)
    expected = parts["nce_1t5"] + 2 * parts["nce_5t5"] + penalty
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_the_5t5_source_is_one_sampled_location_per_image(setup):
    exp, state, views, embeddings = setup
    where = np.asarray(source_locations(jax.random.key(3), 16, 16))
    assert where.shape == (2, 16) and where.min() >= 0 and where.max() < 16
    # A location per image and per direction, not one for the whole batch.
    assert len(np.unique(where[0])) > 1 and not np.array_equal(where[0], where[1])
    assert not np.array_equal(where, np.asarray(source_locations(jax.random.key(4), 16, 16)))
    emb32 = [{k: jnp.asarray(v) for k, v in e.items()} for e in embeddings]
    _, metrics = exp.method.objective(emb32, jnp.asarray(where))
    _, parts = loss_multi_nce(as64(embeddings), where, 3.0)
    assert float(metrics["nce_5t5"]) == pytest.approx(parts["nce_5t5"], rel=1e-4)
    for other in ((where + 1) % 16, where[::-1]):  # other locations; the views' swapped
        _, elsewhere = loss_multi_nce(as64(embeddings), other, 3.0)
        assert abs(elsewhere["nce_5t5"] - parts["nce_5t5"]) > 1e-3
    # The loss draws its locations from its rng as source_locations does.
    rng = jax.random.key(3)
    _, aux = exp.method.loss(state.params, state.batch_stats, {}, {"views": views}, rng, 0)
    assert float(aux.metrics["nce_5t5"]) == pytest.approx(parts["nce_5t5"], rel=1e-4)


@pytest.mark.parametrize("overrides,message", [
    (dict(method=dict(tclip=-1.0)), "tclip=-1.0 must be >= 0"),
    (dict(method=dict(n_rkhs=0)), "n_rkhs=0 must be a positive integer"),
    (dict(method=dict(weight_1t5=-1.0)), "must be >= 0 with one > 0"),
    (dict(method=dict(weight_1t5=0.0, weight_1t7=0.0, weight_5t5=0.0)), "with one > 0"),
    (dict(method=dict(score_penalty=-0.1)), "score_penalty=-0.1"),
    (dict(method=dict(scale7_stage=5)), "scale7_stage=5 is not one of the encoder's 2"),
    (dict(method=dict(scale7_stage=-1)), "two different stage maps"),
    (dict(model=dict(widths=(8,))), "two different stage maps"),
    (dict(model=dict(encoder="vit_tiny")), "feature maps"),
    (dict(augment=dict(num_global_views=1)), "num_global_views=2"),
])
def test_config_errors(overrides, message):
    config = tiny_config("amdim")
    for group, fields in overrides.items():
        config[group].update(fields)
    with pytest.raises(ConfigError, match=message):
        train.create_experiment(config)


def test_real_train_steps_are_finite_and_train_every_head():
    config = tiny_config("amdim")
    config.method.n_rkhs = N_RKHS
    exp, states, metrics = train_steps("amdim", 2, config=config)
    for m in metrics:
        assert all(np.isfinite(m[k]) for k in ("loss", "nce_1t5", "nce_1t7", "nce_5t5",
                                               "score_penalty"))
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), states[0].params,
                         states[-1].params)
    for module in ("encoder", "rkhs_1", "rkhs_5", "rkhs_7", "probe"):
        assert max(jax.tree.leaves(moved[module])) > 1e-7, module
