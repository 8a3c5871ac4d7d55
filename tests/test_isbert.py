"""IS-BERT through the real loop on 8 devices; its n-gram features and loss against float64
NumPy, and padding invariance."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cl_jax import config_lib, train
from cl_jax.errors import ConfigError
from cl_jax.methods.isbert import ISBERT
from cl_jax.models import TextTransformer


def tiny(**method):
    c = config_lib.load_config_file("isbert")
    c.data.update(text_limit=400, text_eval_limit=300, text_sts_pairs=120,
                  tokenizer_captions=2000)
    c.model.text.update(vocab_size=400, width=32, depth=1, num_heads=2, max_len=16)
    c.method.update(channels=8, **method)
    c.update(batch_size=16, total_steps=2, log_every_steps=1, checkpoint_every_steps=2)
    c.eval.batch_size = 64
    c.evals = dict(sts=dict(c.evals.sts.to_dict(), flow=False))  # one evaluator: fewer compiles
    c.data.extra_eval_splits = ("sts",)
    return c


def test_isbert_trains_and_evaluates_through_the_loop(tmp_path, capsys):
    results = train.train_and_evaluate(tiny(), str(tmp_path))
    assert np.isfinite(results["sts_spearman"]) and -1 <= results["sts_spearman"] <= 1
    out = capsys.readouterr().out
    assert "isbert" in out and "sts_spearman" in out and "local_top1" in out


def test_config_errors():
    for field, value in (("measure", "mine"), ("activation", "tanh"), ("kernel_sizes", (1, 2))):
        with pytest.raises(ConfigError, match=field):
            train.create_experiment(tiny(**{field: value}))


def numpy_ngrams(h, valid, params, kernel_sizes):
    """float64: zero the padding, zero-pad (k - 1) / 2 each side, correlate, concatenate,
    ReLU, mean over the valid tokens."""
    h = np.where(valid[..., None], h, 0.0).astype(np.float64)
    length = h.shape[1]
    outs = []
    for k in kernel_sizes:
        kernel = np.asarray(params[f"conv{k}"]["kernel"], np.float64)  # (k, in, out)
        bias = np.asarray(params[f"conv{k}"]["bias"], np.float64)
        p = (k - 1) // 2
        padded = np.pad(h, ((0, 0), (p, p), (0, 0)))
        outs.append(np.stack([sum(padded[:, i + j] @ kernel[j] for j in range(k)) + bias
                              for i in range(length)], axis=1))
    local = np.maximum(np.concatenate(outs, axis=-1), 0.0)
    w = valid.astype(np.float64)
    return local, (w[..., None] * local).sum(1) / w.sum(1)[:, None]


def numpy_jsd(local, global_, valid):
    t = np.einsum("bmd,cd->bmc", local, global_)
    own = np.eye(len(t), dtype=bool)[:, None, :]
    pairs = valid[..., None]
    softplus = lambda x: np.logaddexp(0.0, x)
    e_pos = np.sum(np.where(pairs & own, np.log(2) - softplus(-t), 0.0)) / valid.sum()
    e_neg = np.sum(np.where(pairs & ~own, softplus(t) - np.log(2), 0.0))
    return e_neg / (valid.sum() * (len(t) - 1)) - e_pos


def test_ngram_features_and_loss_match_numpy_and_ignore_padding():
    encoder = TextTransformer(vocab_size=30, width=16, depth=1, num_heads=2, max_len=12,
                              causal=False, pooling="cls")
    config = ml_collections.ConfigDict(dict(name="isbert", measure="jsd", channels=4,
                                            kernel_sizes=(1, 3, 5), activation="relu"))
    method = ISBERT(config, encoder)
    net = method.network
    rows = [[2, 7, 8, 9, 3], [2, 11, 3], [2, 5, 6, 7, 8, 9, 10, 3]]

    def batch(length):
        return jnp.array([r + [0] * (length - len(r)) for r in rows], jnp.int32)

    short, long = batch(8), batch(12)
    # Any parameters will do: random ones, without compiling the initialisers.
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), short, train=False))["params"]
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32) * 0.5, shapes)

    @jax.jit
    def apply(tokens):
        h, _ = encoder.apply({"params": params["encoder"]}, tokens,
                             method=encoder.token_features)
        loss, _ = method.loss(params, {}, None, {"sentences": tokens[:, None]},
                              jax.random.key(1), 0)
        embedding = method.text_features({"params": params}, tokens)
        return *net.apply({"params": params}, tokens, train=False), h, loss, embedding

    local, global_, valid, h, loss, embedding = apply(short)
    ref_local, ref_global = numpy_ngrams(np.asarray(h), np.asarray(valid), params, (1, 3, 5))
    np.testing.assert_allclose(np.asarray(local)[valid], ref_local[valid], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(global_, ref_global, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(embedding, ref_global, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loss, numpy_jsd(ref_local, ref_global, np.asarray(valid)),
                               rtol=1e-4)
    assert local.shape == (3, 8, 12)
    # More padding, and a sentence alone: the same local features, global feature and loss.
    local_l, global_l, valid_l, _, loss_l, _ = apply(long)
    np.testing.assert_allclose(np.asarray(local_l)[valid_l], np.asarray(local)[valid],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(global_l, global_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss_l, loss, rtol=1e-5)
    local_1, global_1, *_ = apply(jnp.array(rows[:1], jnp.int32))
    np.testing.assert_allclose(local_1[0], local[0, :5], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(global_1[0], global_[0], rtol=1e-5, atol=1e-6)
