"""The text Transformer: CLIP's parameter count, a float64 NumPy forward pass, the causal and
padding masks, the pooled positions, dropout, bfloat16 and remat."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from cl_jax.models.text import TextTransformer

# Two texts of different lengths, padded with 0; the first row ends at position 4, the second
# at position 2 (the last non-pad position: the EOS a tokenizer puts there).
TOKENS = np.array([[5, 9, 7, 11, 3, 0, 0], [4, 8, 3, 0, 0, 0, 0]], np.int32)
LAST = np.array([4, 2])


def tiny(**kwargs):
    return TextTransformer(**{"vocab_size": 16, "width": 16, "depth": 2, "num_heads": 2,
                              "max_len": 10, **kwargs})


@functools.cache
def _random_params():
    # O(1) random parameters (CLIP's initialisation makes most branches tiny), drawn by NumPy:
    # no JAX random-number program to compile.
    model = tiny(output_dim=6)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), TOKENS))["params"]
    rng = np.random.RandomState(0)
    return jax.tree.map(lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32), shapes)


def random_params(projection=False):
    """Parameters of every ``tiny`` model (the projection's only with ``output_dim=6``)."""
    params = dict(_random_params())
    return params if projection else {k: v for k, v in params.items() if k != "projection"}


def dropout_key(seed):
    # The rbg generator compiles far faster than threefry on CPU; dropout works the same.
    return {"dropout": jax.random.key(seed, impl="rbg")}


def numpy_forward(params, tokens, num_heads, causal, pad_id=0):
    """Per-token features from the parameters, in float64, written from the CLIP / GPT-2
    equations (pre-norm blocks, masked softmax attention, exact GELU, final LayerNorm)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)

    def norm(x, q):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * q["scale"] + q["bias"]

    def dense(x, q):
        return x @ q["kernel"] + q["bias"]

    b, t = tokens.shape
    x = p["token_embedding"]["embedding"][tokens] + p["pos_embedding"][:t]
    w = x.shape[-1]
    d = w // num_heads
    allowed = np.broadcast_to(tokens[:, None, :] != pad_id, (b, t, t))
    if causal:
        allowed = allowed & np.tril(np.ones((t, t), bool))
    i = 0
    while f"block_{i}" in p:
        q = p[f"block_{i}"]
        qkv = dense(norm(x, q["norm1"]), q["qkv"])
        heads = [qkv[..., j * w:(j + 1) * w].reshape(b, t, num_heads, d) for j in range(3)]
        logits = np.einsum("bqhd,bkhd->bhqk", heads[0], heads[1]) / math.sqrt(d)
        logits = np.where(allowed[:, None], logits, -np.inf)
        att = np.exp(logits - logits.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + dense(np.einsum("bhqk,bkhd->bqhd", att, heads[2]).reshape(b, t, w), q["proj"])
        y = dense(norm(x, q["norm2"]), q["fc1"])
        x = x + dense(0.5 * y * (1 + erf(y / math.sqrt(2))), q["fc2"])
        i += 1
    return norm(x, p["norm"])


def test_clip_text_encoder_parameter_count():
    # CLIP's text tower (Radford et al. 2021, section 2.4: "a 63M-parameter 12-layer 512-wide
    # model with 8 attention heads", vocabulary 49,408, context 77, projection to 512), by hand:
    per_block = 2 * 512 + (512 * 1536 + 1536) + (512 * 512 + 512) + 2 * 512 \
        + (512 * 2048 + 2048) + (2048 * 512 + 512)
    expected = 49408 * 512 + 77 * 512 + 12 * per_block + 2 * 512 + 512 * 512
    model = TextTransformer(vocab_size=49408, output_dim=512)
    tokens = jnp.zeros((2, 77), jnp.int32)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens))
    assert sum(x.size for x in jax.tree.leaves(variables)) == expected == 63_428_096
    assert jax.eval_shape(lambda v: model.apply(v, tokens), variables).shape == (2, 512)


@pytest.mark.parametrize("causal", [True, False])
def test_token_features_match_numpy_float64(causal):
    model = tiny(causal=causal)
    params = random_params()
    features, mask = model.apply({"params": params}, TOKENS, method=model.token_features)
    assert features.shape == (2, 7, 16) and features.dtype == jnp.float32
    np.testing.assert_array_equal(mask, TOKENS != 0)
    expected = numpy_forward(params, TOKENS, 2, causal)
    valid = TOKENS != 0  # padding queries' outputs are unused, and are not compared
    np.testing.assert_allclose(np.asarray(features)[valid], expected[valid], atol=1e-4)


def test_pooling_picks_the_documented_positions():
    variables = {"params": random_params(projection=True)}
    kernel = np.asarray(variables["params"]["projection"]["kernel"], np.float64)
    for pooling in ("eos", "mean", "cls"):
        model = tiny(pooling=pooling, output_dim=6)
        pooled, features, mask = model.apply(variables, TOKENS, return_tokens=True)
        f, m = np.asarray(features, np.float64), np.asarray(mask)
        if pooling == "eos":
            before = f[np.arange(2), LAST]
        elif pooling == "mean":
            before = np.stack([f[r, m[r]].mean(0) for r in range(2)])
        else:
            before = f[:, 0]
        np.testing.assert_allclose(pooled, before @ kernel, atol=1e-5)  # a bias-free projection
        features_again, mask_again = model.apply(variables, TOKENS, method=model.token_features)
        np.testing.assert_array_equal(features_again, features)
        np.testing.assert_array_equal(mask_again, mask)


def test_causal_mask_hides_later_tokens():
    changed = TOKENS.copy()
    changed[0, 2] = 13
    variables = {"params": random_params()}
    for causal in (True, False):
        model = tiny(causal=causal)
        a, b = (model.apply(variables, t, method=model.token_features)[0]
                for t in (TOKENS, changed))
        diff = np.abs(np.asarray(a - b)).max(-1)
        np.testing.assert_array_equal(diff[1], 0)  # the other row
        assert np.all(diff[0, 2:5] > 1e-3)
        if causal:
            np.testing.assert_array_equal(diff[0, :2], 0)
        else:
            assert np.all(diff[0, :2] > 1e-3)


@pytest.mark.parametrize("causal", [True, False])
def test_padding_changes_nothing(causal):
    # Pads appended, the pad embedding replaced, and a pad id other than 0.
    longer = np.pad(TOKENS, ((0, 0), (0, 3)))
    valid = TOKENS != 0
    params = random_params()
    for pooling in ("eos", "mean", "cls"):
        for pad_id in (0, 15):
            model = tiny(causal=causal, pooling=pooling, pad_id=pad_id)
            table = params["token_embedding"]["embedding"].copy()
            table[pad_id] = 7.0
            other = {**params, "token_embedding": {"embedding": table}}
            short, long = (np.where(t == 0, pad_id, t) for t in (TOKENS, longer))
            pooled, f, _ = model.apply({"params": params}, short, return_tokens=True)
            pooled_other, g, _ = model.apply({"params": other}, short, return_tokens=True)
            np.testing.assert_allclose(model.apply({"params": params}, long), pooled, atol=1e-5)
            np.testing.assert_allclose(pooled_other, pooled, atol=1e-5)
            np.testing.assert_allclose(np.asarray(g)[valid], np.asarray(f)[valid], atol=1e-5)


def test_all_padding_row_is_finite():
    tokens = np.zeros_like(TOKENS)  # the usual shape: no new compilations
    variables = {"params": random_params()}
    assert np.all(np.isfinite(tiny(pooling="eos").apply(variables, tokens)))
    np.testing.assert_array_equal(tiny(pooling="mean").apply(variables, tokens), 0)


def test_dropout_only_in_training():
    model = tiny(dropout_rate=0.3)
    variables = {"params": random_params()}
    a, a_again, b = (model.apply(variables, TOKENS, train=True, rngs=dropout_key(i))
                     for i in (1, 1, 2))
    np.testing.assert_array_equal(a, a_again)
    assert np.abs(np.asarray(a - b)).max() > 1e-2
    plain = model.apply(variables, TOKENS)  # train=False needs no dropout rng
    assert np.abs(np.asarray(a - plain)).max() > 1e-2
    np.testing.assert_array_equal(plain, model.apply(variables, TOKENS, rngs=dropout_key(2)))
    np.testing.assert_allclose(plain, tiny().apply(variables, TOKENS), atol=1e-6)


def test_init_is_clips_in_float32_and_bfloat16_compute_gives_float32():
    width, depth = 32, 2
    model = tiny(width=width, depth=depth, dtype=jnp.bfloat16, output_dim=6)
    params = jax.jit(model.init)(jax.random.key(0, impl="rbg"), TOKENS)["params"]
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    out_std = width ** -0.5 * (2 * depth) ** -0.5
    stds = {"token_embedding": 0.02, "pos_embedding": 0.01, "qkv": width ** -0.5,
            "proj": out_std, "fc1": (2 * width) ** -0.5, "fc2": out_std,
            "projection": width ** -0.5}
    flat = {"/".join(k.key for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_leaves_with_path(params)}
    for name, value in flat.items():
        parts = name.split("/")
        if parts[-1] == "bias":
            np.testing.assert_array_equal(value, 0)
        elif parts[-1] == "scale":
            np.testing.assert_array_equal(value, 1)
        else:
            std = stds[parts[0] if parts[0] in stds else parts[1]]
            np.testing.assert_allclose(value.std(), std, rtol=0.15, err_msg=name)
    pooled, features, _ = model.apply({"params": params}, TOKENS, return_tokens=True)
    assert pooled.dtype == features.dtype == jnp.float32
    assert pooled.shape == (2, 6) and features.shape == (2, 7, width)
    full = model.clone(dtype=jnp.float32).apply({"params": params}, TOKENS)
    np.testing.assert_allclose(pooled, full, rtol=0.05, atol=0.02)


def test_remat_changes_neither_values_nor_gradients():
    models = [tiny(depth=1, remat=remat, dropout_rate=0.2) for remat in (False, True)]
    params = {k: v for k, v in random_params().items() if k != "block_1"}

    def loss(params, model):
        out = model.apply({"params": params}, TOKENS, train=True, rngs=dropout_key(3))
        return jnp.sum(out ** 2)

    (la, ga), (lb, gb) = jax.jit(lambda p: [jax.value_and_grad(loss)(p, m) for m in models])(
        params)
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    scale = max(np.abs(g).max() for g in jax.tree.leaves(ga))
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5 * scale), ga, gb)


def test_clear_errors():
    model = tiny()
    for tokens, match in ((np.ones((1, 11), np.int32), "max_len"),
                          (np.ones((1, 4), np.float32), "integer")):
        with pytest.raises(ValueError, match=match):
            jax.eval_shape(lambda t=tokens: model.init(jax.random.key(0), t))
    with pytest.raises(ValueError, match="pooling"):
        jax.eval_shape(lambda: tiny(pooling="max").init(jax.random.key(0), TOKENS))
