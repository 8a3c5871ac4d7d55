"""GradCache (cl_jax.grad_cache): the loss and gradient of a contrastive objective computed
chunk by chunk equal those of the whole batch with every activation kept, written here
independently (each chunk sliced out and embedded with its key, then ``jax.value_and_grad``),
and the losses equal float64 NumPy on the returned embeddings. SimCSE with dropout (the replay
must draw the same masks), CLIP towers (learned scale, ``rng=None``), chunk_size == N, the
batch sharded over the 8 forced devices, ``cached_embed`` inside a plain
``jax.value_and_grad``, BatchNorm state, bad chunk sizes, and the compiled temporary memory."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cl_jax import grad_cache, losses
from cl_jax.models.text import TextTransformer

VOCAB, LENGTH = 20, 6


def random_params(module, *sample, scale=0.3, seed=0):
    """O(1) random parameters drawn by NumPy (no init program to compile)."""
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *sample))["params"]
    rng = np.random.RandomState(seed)
    return jax.tree.map(lambda s: rng.normal(0, scale, s.shape).astype(np.float32), shapes)


def random_tokens(n, seed=0):
    tokens = np.random.RandomState(seed).randint(1, VOCAB, (n, LENGTH))
    tokens[::3, -2:] = 0  # some padding
    return tokens.astype(np.int32)


def assert_tree_close(actual, expected, rtol=1e-5):
    """Leaf by leaf, elements within ``rtol`` of the leaf's largest magnitude."""
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        e = np.asarray(e)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * np.abs(e).max())


def interleave(chunk_embeddings):
    """Per-chunk embeddings (chunk c holds rows c::C) back into row order."""
    return jax.tree.map(lambda *e: jnp.stack(e, axis=1).reshape(-1, *e[0].shape[1:]),
                        *chunk_embeddings)


def reference_value_and_grad(embed_fn, loss_fn, chunk_size):
    """The documented semantics, plainly: chunk c = rows c::C with key fold_in(rng, c), every
    chunk embedded and the loss differentiated with every activation kept."""

    def objective(params, inputs, rng):
        count = jax.tree.leaves(inputs)[0].shape[0] // chunk_size
        chunks = [embed_fn(params, jax.tree.map(lambda x, c=c: x[c::count], inputs),
                           None if rng is None else jax.random.fold_in(rng, c))
                  for c in range(count)]
        return loss_fn(params, interleave(chunks))

    return jax.value_and_grad(objective, has_aux=True)


def numpy_info_nce(z1, z2, temperature):
    a = z1 / np.linalg.norm(z1, axis=1, keepdims=True)
    b = z2 / np.linalg.norm(z2, axis=1, keepdims=True)
    logits = a @ b.T / temperature
    m = logits.max(1)
    lse = m + np.log(np.exp(logits - m[:, None]).sum(1))
    return np.mean(lse - np.diag(logits))


def numpy_clip(image, text, scale):
    a = image / np.linalg.norm(image, axis=1, keepdims=True)
    b = text / np.linalg.norm(text, axis=1, keepdims=True)
    logits = scale * a @ b.T

    def lse(x, axis):
        m = x.max(axis)
        return m + np.log(np.exp(x - np.expand_dims(m, axis)).sum(axis))

    diag = np.diag(logits)
    return (np.mean(lse(logits, 1) - diag) + np.mean(lse(logits, 0) - diag)) / 2


# --- SimCSE: one encoder, two dropout passes, InfoNCE with a learned temperature ------------

SIMCSE_ENCODER = TextTransformer(vocab_size=VOCAB, width=8, depth=1, num_heads=2,
                                 max_len=LENGTH, causal=False, pooling="mean", dropout_rate=0.1)
SIMCSE_N, SIMCSE_CHUNK = 12, 4


def simcse_embed(params, tokens, rng):
    first, second = jax.random.split(rng)
    encode = lambda key: SIMCSE_ENCODER.apply({"params": params["encoder"]}, tokens,
                                              train=True, rngs={"dropout": key})
    return encode(first), encode(second)


def simcse_loss(params, embeddings):
    z1, z2 = embeddings
    return losses.info_nce(z1, z2, temperature=jnp.exp(params["log_temp"])), embeddings


@functools.cache
def simcse_results():
    params = {"encoder": random_params(SIMCSE_ENCODER, random_tokens(2)),
              "log_temp": np.float32(np.log(0.2))}
    # The rbg generator compiles far faster than threefry on CPU; the masks replay the same.
    args = (params, random_tokens(SIMCSE_N), jax.random.key(3, impl="rbg"))
    cached = grad_cache.grad_cache_value_and_grad(simcse_embed, simcse_loss, SIMCSE_CHUNK)
    reference = reference_value_and_grad(simcse_embed, simcse_loss, SIMCSE_CHUNK)
    return params, jax.jit(cached)(*args), jax.jit(reference)(*args)


def test_simcse_dropout_gradient_equals_full_batch():
    _, ((loss, (z1, z2)), grads), ((ref_loss, ref_emb), ref_grads) = simcse_results()
    assert_tree_close((z1, z2), ref_emb)  # the same chunk rngs, so the same dropout masks
    assert np.abs(np.asarray(z1) - np.asarray(z2)).max() > 1e-2  # dropout acts
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert_tree_close(grads, ref_grads)
    assert np.abs(grads["log_temp"]) > 1e-3  # the temperature's direct gradient is there


def test_simcse_loss_equals_numpy_float64():
    params, ((loss, (z1, z2)), _), _ = simcse_results()
    expected = numpy_info_nce(np.float64(z1), np.float64(z2), np.exp(params["log_temp"]))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


# --- CLIP: an MLP "image" tower, a text tower, symmetric cross-entropy, learned scale -------


class ImageTower(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(8)(jnp.tanh(nn.Dense(16)(x)))


IMAGE_TOWER = ImageTower()
TEXT_TOWER = TextTransformer(vocab_size=VOCAB, width=8, depth=1, num_heads=2, max_len=LENGTH,
                             causal=True, pooling="eos", output_dim=8)
CLIP_N, CLIP_CHUNK, IMAGE_DIM = 64, 8, 5


def clip_params():
    return {"image": random_params(IMAGE_TOWER, np.zeros((2, IMAGE_DIM), np.float32)),
            "text": random_params(TEXT_TOWER, random_tokens(2), seed=1),
            "log_scale": np.float32(np.log(5.0))}


def clip_inputs(n, seed=0):
    images = np.random.RandomState(seed).normal(size=(n, IMAGE_DIM)).astype(np.float32)
    return {"image": images, "tokens": random_tokens(n, seed)}


def clip_embed(params, batch, rng):
    assert rng is None
    return {"image": IMAGE_TOWER.apply({"params": params["image"]}, batch["image"]),
            "text": TEXT_TOWER.apply({"params": params["text"]}, batch["tokens"])}


def clip_loss(params, embeddings):
    loss = losses.clip(embeddings["image"], embeddings["text"], jnp.exp(params["log_scale"]))
    return loss, embeddings


def plain_clip_value_and_grad(params, batch):
    """No chunks at all (the towers have no randomness): the ordinary full-batch gradient."""
    return jax.value_and_grad(lambda p: clip_loss(p, clip_embed(p, batch, None)),
                              has_aux=True)(params)


def compile_and_run(fn, *args):
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, compiled(*args)


@functools.cache
def clip_reference():
    params, batch = clip_params(), clip_inputs(CLIP_N)
    return params, batch, *compile_and_run(plain_clip_value_and_grad, params, batch)


@functools.cache
def clip_cached(chunk_size, sharded):
    params, batch, _, _ = clip_reference()
    if sharded:
        mesh = Mesh(np.array(jax.devices()), ("data",))
        assert chunk_size % mesh.size == 0  # every chunk spans all devices
        batch = jax.device_put(batch, NamedSharding(mesh, P("data")))
    cached = grad_cache.grad_cache_value_and_grad(clip_embed, clip_loss, chunk_size)
    return compile_and_run(cached, params, batch, None)


@pytest.mark.parametrize("chunk_size, sharded", [(CLIP_CHUNK, False), (CLIP_CHUNK, True),
                                                 (CLIP_N, False)])
def test_clip_gradient_equals_full_batch(chunk_size, sharded):
    """Chunks of 8, on one device and with the batch sharded over the 8 devices, and one chunk
    of all N rows: no caching at all."""
    _, _, _, ((ref_loss, ref_emb), ref_grads) = clip_reference()
    _, ((loss, emb), grads) = clip_cached(chunk_size, sharded)
    expected = numpy_clip(np.float64(emb["image"]), np.float64(emb["text"]), 5.0)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert_tree_close(emb, ref_emb)
    assert_tree_close(grads, ref_grads)


def test_compiled_temp_memory_is_one_chunk():
    """8 chunks of 8 rows: the temporaries are mostly one chunk's activations, not 64 rows'."""
    without = clip_reference()[2].memory_analysis().temp_size_in_bytes
    with_cache = clip_cached(CLIP_CHUNK, False)[0].memory_analysis().temp_size_in_bytes
    assert with_cache < 0.4 * without, (with_cache, without)


def toy_embed(params, x, rng):
    """A linear map with dropout-like noise: cheap to compile, and it reads its rng."""
    keep = jax.random.bernoulli(rng, 0.7, (x.shape[0], 8))
    return jnp.tanh(x @ params["w"]) * keep


def toy_loss(params, z):
    return losses.clip(z[:, :4], z[:, 4:], jnp.exp(params["log_scale"])), z


def test_full_batch_reference_and_cached_embed_under_value_and_grad():
    """``full_batch_value_and_grad``, and ``cached_embed`` dropped into a plain
    ``jax.value_and_grad``, against the reference on a cheap network that reads its rng."""
    rng = np.random.RandomState(0)
    params = {"w": rng.normal(size=(3, 8)).astype(np.float32), "log_scale": np.float32(1.0)}
    args = (params, rng.normal(size=(12, 3)).astype(np.float32), jax.random.key(5))
    (ref_loss, ref_z), ref_grads = jax.jit(reference_value_and_grad(toy_embed, toy_loss, 4))(
        *args)
    assert 0 < np.mean(np.asarray(ref_z) == 0) < 0.6  # the noise acts
    embed = grad_cache.cached_embed(toy_embed, 4)
    in_loss = lambda p, x, key: jax.value_and_grad(
        lambda q: toy_loss(q, embed(q, x, key)), has_aux=True)(p)
    for fn in (grad_cache.full_batch_value_and_grad(toy_embed, toy_loss, 4), in_loss):
        (loss, z), grads = jax.jit(fn)(*args)
        np.testing.assert_array_equal(z, ref_z)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        assert_tree_close(grads, ref_grads)


def test_chunk_size_must_divide_batch():
    cached = grad_cache.grad_cache_value_and_grad(clip_embed, clip_loss, 4)
    with pytest.raises(ValueError, match=r"batch of 10 rows .* chunk_size=4"):
        cached(clip_params(), clip_inputs(10), None)
    ragged = dict(clip_inputs(8), tokens=random_tokens(12))
    with pytest.raises(ValueError, match="same leading batch axis"):
        cached(clip_params(), ragged, None)


# --- BatchNorm: per-chunk statistics, running averages updated once per chunk -----------------


class BatchNormNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.BatchNorm(use_running_average=False, momentum=0.9)(x)
        return nn.Dense(8)(jnp.tanh(nn.Dense(16)(x)))


BN_NET, BN_N, BN_CHUNK, BN_MOMENTUM = BatchNormNet(), 16, 4, 0.9


def bn_embed(params, stats, x, rng):
    z, updates = BN_NET.apply({"params": params["net"], "batch_stats": stats}, x,
                              mutable=["batch_stats"])
    return z, updates["batch_stats"]


def bn_loss(params, z):
    return losses.clip(z[:, :4], z[:, 4:], jnp.exp(params["log_scale"])), None


def bn_reference(params, stats, x):
    """A Python loop over the chunks in order, the statistics threaded through."""
    count = x.shape[0] // BN_CHUNK

    def objective(params):
        chunks, s = [], stats
        for c in range(count):
            z, s = bn_embed(params, s, x[c::count], None)
            chunks.append(z)
        return bn_loss(params, interleave(chunks))[0], s

    return jax.value_and_grad(objective, has_aux=True)(params)


def test_batch_norm_state_per_chunk():
    x = np.random.RandomState(0).normal(1.0, 2.0, (BN_N, 3)).astype(np.float32)
    variables = jax.eval_shape(lambda: BN_NET.init(jax.random.key(0), x))
    params = {"net": random_params(BN_NET, x), "log_scale": np.float32(np.log(5.0))}
    stats = {"BatchNorm_0": {"mean": np.zeros(3, np.float32), "var": np.ones(3, np.float32)}}
    assert jax.tree.structure(stats) == jax.tree.structure(variables["batch_stats"])
    cached = grad_cache.grad_cache_value_and_grad(bn_embed, bn_loss, BN_CHUNK, has_state=True)
    (loss, _), grads, new_stats = jax.jit(cached)(params, stats, x, None)
    (ref_loss, ref_stats), ref_grads = jax.jit(bn_reference)(params, stats, x)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert_tree_close(grads, ref_grads)
    assert_tree_close(new_stats, ref_stats)
    full = grad_cache.full_batch_value_and_grad(bn_embed, bn_loss, BN_CHUNK, has_state=True)
    (full_loss, _), full_grads, full_stats = jax.jit(full)(params, stats, x, None)
    np.testing.assert_allclose(full_loss, ref_loss, rtol=1e-5)
    assert_tree_close((full_grads, full_stats), (ref_grads, ref_stats))
    # The running averages by hand: one momentum update per chunk (rows c::C), in order.
    count, mean, var = BN_N // BN_CHUNK, np.zeros(3), np.ones(3)
    for c in range(count):
        rows = np.float64(x[c::count])
        mean = BN_MOMENTUM * mean + (1 - BN_MOMENTUM) * rows.mean(0)
        var = BN_MOMENTUM * var + (1 - BN_MOMENTUM) * rows.var(0)
    np.testing.assert_allclose(new_stats["BatchNorm_0"]["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(new_stats["BatchNorm_0"]["var"], var, rtol=1e-5)
    # Not the gradient of BatchNorm over the whole batch: statistics are per chunk.
    whole = grad_cache.grad_cache_value_and_grad(bn_embed, bn_loss, BN_N, has_state=True)
    _, whole_grads, _ = jax.jit(whole)(params, stats, x, None)
    kernel = lambda g: np.asarray(g["net"]["Dense_0"]["kernel"])
    assert np.abs(kernel(whole_grads) - kernel(grads)).max() > 1e-3 * np.abs(kernel(grads)).max()
