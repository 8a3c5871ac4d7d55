"""CLIP and SigLIP (dense, blockwise, ring) against float64 NumPy references and by hand."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from cl_jax.losses import image_text as IT

N, D = 6, 8  # the shape of the reference and known-answer checks (one compilation per form)


def normal(seed, *shape):
    return np.random.RandomState(seed).normal(size=shape).astype(np.float32)


def pairs(seed, n=N, d=D, noise=0.8):
    """Images and their texts: text i is image i plus noise, at random norms."""
    rng = np.random.RandomState(seed)
    img = rng.normal(size=(n, d)) * rng.uniform(0.3, 3.0, size=(n, 1))
    txt = img + noise * rng.normal(size=(n, d)) * np.abs(img).mean()
    return img.astype(np.float32), txt.astype(np.float32)


# ---- references: float64, explicit loops ----


def ref_cos(img, txt):
    a = np.asarray(img, np.float64)
    b = np.asarray(txt, np.float64)
    return np.array([[x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in b] for x in a])


def ref_clip(img, txt, scale):
    logits = scale * ref_cos(img, txt)
    n = len(logits)
    rows = [np.log(np.sum(np.exp(logits[i] - logits[i, i]))) for i in range(n)]
    cols = [np.log(np.sum(np.exp(logits[:, j] - logits[j, j]))) for j in range(n)]
    return (np.mean(rows) + np.mean(cols)) / 2


def ref_siglip(img, txt, scale, bias):
    logits = scale * ref_cos(img, txt) + bias
    n = len(logits)
    # -log sigmoid(x) = log(1 + exp(-x))
    total = sum(np.logaddexp(0.0, -(1.0 if i == j else -1.0) * logits[i, j])
                for i in range(n) for j in range(n))
    return total / n


def numeric_grads(f, *args, h=1e-6):
    """Central differences of the float64 function ``f`` w.r.t. each of its arguments."""
    args = [np.array(a, np.float64) for a in args]
    grads = []
    for a in args:
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + h
            up = f(*args)
            a[idx] = old - h
            g[idx] = (up - f(*args)) / (2 * h)
            a[idx] = old
        grads.append(g)
    return grads


def assert_grads_close(actual, desired, rtol=1e-4):
    for a, d in zip(actual, desired, strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, d, rtol=rtol, atol=rtol * np.abs(d).max())


# Jitted once per form; the scale and bias are traced, so every value reuses the compilation.
@pytest.fixture(scope="module")
def forms():
    """{(loss, block_size): jitted value_and_grad w.r.t. all arguments}."""
    return {
        (name, block_size): jax.jit(jax.value_and_grad(
            lambda *args, f=f, b=block_size: f(*args, block_size=b), tuple(range(nargs))))
        for name, f, nargs in (("clip", IT.clip, 3), ("siglip", IT.siglip, 4))
        for block_size in (None, 4)  # 4: N = 6 leaves a padded last block
    }


@pytest.mark.parametrize("block_size", [None, 4])
@pytest.mark.parametrize("seed, scale, bias", [(0, 1.0, 0.0), (1, 14.3, -3.0), (2, 100.0, -10.0)])
def test_matches_numpy_reference(forms, block_size, seed, scale, bias):
    img, txt = pairs(seed)
    value, grads = forms["clip", block_size](img, txt, scale)
    np.testing.assert_allclose(value, ref_clip(img, txt, scale), rtol=1e-5)
    assert_grads_close(grads, numeric_grads(ref_clip, img, txt, scale))

    value, grads = forms["siglip", block_size](img, txt, scale, bias)
    np.testing.assert_allclose(value, ref_siglip(img, txt, scale, bias), rtol=1e-5)
    assert_grads_close(grads, numeric_grads(ref_siglip, img, txt, scale, bias))


@pytest.mark.parametrize("block_size", [None, 4])
def test_known_answers(forms, block_size):
    """Image i and text i both along axis i (at other lengths): cos is the identity, so
    ``clip = log(1 + (N-1) e^-s)`` and ``siglip = softplus(-(s+b)) + (N-1) softplus(b)``."""
    rng = np.random.RandomState(3)
    img = np.eye(N, D, dtype=np.float32) * rng.uniform(0.5, 2.0, (N, 1)).astype(np.float32)
    txt = np.eye(N, D, dtype=np.float32) * rng.uniform(0.5, 2.0, (N, 1)).astype(np.float32)
    for s in (np.log(N - 1.0), 2.0, 50.0):  # log(N-1) gives log 2; 50 gives ~0
        e = (N - 1) * np.exp(-s)
        value, (_, _, d_scale) = forms["clip", block_size](img, txt, s)
        np.testing.assert_allclose(value, np.log1p(e), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(d_scale, -e / (1 + e), rtol=1e-5, atol=1e-7)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))
    for s, b in ((10.0, -10.0), (3.0, 1.0)):
        value, (_, _, d_scale, d_bias) = forms["siglip", block_size](img, txt, s, b)
        expected = np.logaddexp(0, -(s + b)) + (N - 1) * np.logaddexp(0, b)
        np.testing.assert_allclose(value, expected, rtol=1e-5)
        np.testing.assert_allclose(d_scale, -sigmoid(-(s + b)), rtol=1e-5)
        np.testing.assert_allclose(d_bias, -sigmoid(-(s + b)) + (N - 1) * sigmoid(b), rtol=1e-5)


def test_blockwise_equals_dense_and_bfloat16():
    """N = 13 in blocks of 5 (and one block of all), logits up to 100, bfloat16 inputs."""
    img, txt = pairs(4, n=13)

    @jax.jit
    def all_forms(img, txt):
        results = []
        for k in (None, 5, 64):
            clip = functools.partial(IT.clip, block_size=k)
            siglip = functools.partial(IT.siglip, block_size=k)
            results.append((jax.value_and_grad(clip, (0, 1, 2))(img, txt, 100.0),
                            jax.value_and_grad(siglip, (0, 1, 2, 3))(img, txt, 100.0, -5.0)))
        low = img.astype(jnp.bfloat16), txt.astype(jnp.bfloat16)
        return results, (IT.clip(*low, 100.0, 5), IT.siglip(*low, 100.0, -5.0, 5))

    # Also image 0 opposite every text: its logits are all near -100 (a padded text's 0 is not).
    far_img, far_txt = img.copy(), txt.copy()
    far_img[0], far_txt[:, 0] = np.eye(1, img.shape[1]), -30.0
    for args in ((img, txt), (far_img, far_txt)):
        (dense, *blockwise), low = all_forms(*args)
        for results in blockwise:
            for (value, grads), (dense_value, dense_grads) in zip(results, dense, strict=True):
                np.testing.assert_allclose(value, dense_value, rtol=1e-5)
                assert_grads_close(grads, dense_grads, rtol=1e-5)
        # bfloat16 in: float32 math on the upcast values.
        img16, txt16 = (np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32) for x in args)
        assert low[0].dtype == low[1].dtype == jnp.float32
        np.testing.assert_allclose(low[0], ref_clip(img16, txt16, 100.0), rtol=1e-5)
        np.testing.assert_allclose(low[1], ref_siglip(img16, txt16, 100.0, -5.0), rtol=1e-5)


MESH = Mesh(np.array(jax.devices()), ("data",))


def ring_value_and_grad(loss, num_scalars, check_vma=True):
    """jit(value_and_grad) of ``loss`` inside shard_map, embeddings split over 8 devices."""
    specs = (P("data"), P("data")) + (P(),) * num_scalars
    ring = jax.shard_map(lambda *args: loss(*args, "data"), mesh=MESH, in_specs=specs,
                         out_specs=P(), check_vma=check_vma)
    return jax.jit(jax.value_and_grad(ring, tuple(range(2 + num_scalars))))


@pytest.mark.parametrize("n", [16, 32])
def test_ring_equals_dense_on_8_devices(n):
    img, txt = pairs(5, n=n)
    clip_dense = jax.jit(jax.value_and_grad(IT.clip, (0, 1, 2)))
    siglip_dense = jax.jit(jax.value_and_grad(IT.siglip, (0, 1, 2, 3)))
    cases = [(ring_value_and_grad(IT.clip_ring, 1), clip_dense, (img, txt, 30.0)),
             (ring_value_and_grad(IT.siglip_ring, 2), siglip_dense, (img, txt, 10.0, -4.0))]
    if n == 16:  # shard_map's grad without the replication checks: the same gradients
        cases.append((ring_value_and_grad(IT.clip_ring, 1, check_vma=False), clip_dense,
                      (img, txt, 30.0)))
    for ring, dense, args in cases:
        value, grads = ring(*args)
        dense_value, dense_grads = dense(*args)
        np.testing.assert_allclose(value, dense_value, rtol=1e-5)
        assert_grads_close(grads, dense_grads, rtol=1e-5)
    np.testing.assert_allclose(cases[0][0](*cases[0][2])[0], ref_clip(img, txt, 30.0), rtol=1e-5)


def test_ring_returns_the_global_loss_on_every_device():
    img, txt = pairs(6, n=16)

    def per_device(img, txt):
        both = IT.clip_ring(img, txt, 30.0, "data"), IT.siglip_ring(img, txt, 10.0, -4.0, "data")
        return jnp.stack(both)[None]  # (1, 2) per device

    losses = jax.jit(jax.shard_map(per_device, mesh=MESH, in_specs=(P("data"), P("data")),
                                   out_specs=P("data")))(img, txt)
    assert losses.shape == (8, 2) and losses.dtype == jnp.float32
    expected = [ref_clip(img, txt, 30.0), ref_siglip(img, txt, 10.0, -4.0)]
    np.testing.assert_allclose(losses, np.tile(expected, (8, 1)), rtol=1e-5)


def test_blockwise_inside_shard_map():
    """Each device's own loss (its 3 pairs, blocks of 2), as a local-loss step would use it."""
    img, txt = pairs(7, n=24)

    def local(img, txt):
        return jax.lax.pmean(IT.clip(img, txt, 30.0, block_size=2)
                             + IT.siglip(img, txt, 10.0, -4.0, block_size=2), "data")

    def ref(img, txt):
        return np.mean([ref_clip(a, b, 30.0) + ref_siglip(a, b, 10.0, -4.0)
                        for a, b in zip(np.split(img, 8), np.split(txt, 8), strict=True)])

    f = jax.shard_map(local, mesh=MESH, in_specs=(P("data"), P("data")), out_specs=P())
    value, grads = jax.jit(jax.value_and_grad(f, (0, 1)))(img, txt)
    np.testing.assert_allclose(value, ref(img, txt), rtol=1e-5)
    assert_grads_close(grads, numeric_grads(ref, img, txt))


def temp_bytes(f, *args):
    return jax.jit(f).lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_blockwise_and_ring_never_materialise_the_logits():
    x, s = jax.ShapeDtypeStruct((2048, 16), jnp.float32), jax.ShapeDtypeStruct((), jnp.float32)
    matrix_bytes = 2048**2 * 4  # 16 MiB
    for loss, ring, scalars in ((IT.clip, IT.clip_ring, (s,)),
                                (IT.siglip, IT.siglip_ring, (s, s))):
        args = (x, x, *scalars)
        argnums = tuple(range(len(args)))
        blockwise = jax.value_and_grad(lambda *a, f=loss: f(*a, block_size=128), argnums)
        assert temp_bytes(blockwise, *args) < matrix_bytes / 4  # a few 2048 x 128 blocks
        # A 256 x 256 block is 1/64 of the matrix; even the dense loss of a sharded batch keeps
        # 1/8 of the matrix (its 256 rows) per device.
        assert temp_bytes(ring_value_and_grad(ring, len(scalars)), *args) < matrix_bytes / 16


def test_bfloat16_output_dtype_and_errors():
    img, txt = jnp.zeros((16, 4), jnp.bfloat16), jnp.zeros((16, 4), jnp.bfloat16)
    scale = jnp.ones((1,), jnp.bfloat16)  # big_vision keeps t and b with shape (1,)
    for f in (IT.clip, lambda a, b, s: IT.clip(a, b, s, block_size=5),
              lambda a, b, s: IT.siglip(a, b, s, -s), lambda a, b, s: IT.siglip(a, b, s, s, 5),
              jax.shard_map(lambda a, b, s: jnp.stack([IT.clip_ring(a, b, s, "data"),
                                                       IT.siglip_ring(a, b, s, s, "data")]),
                            mesh=MESH, in_specs=(P("data"), P("data"), P()), out_specs=P())):
        assert jax.eval_shape(f, img, txt, scale).dtype == jnp.float32

    a, b = normal(7, 4, 3), normal(8, 4, 3)
    with pytest.raises(ValueError, match="same shape"):
        IT.clip(a, b[:3], 1.0)
    with pytest.raises(ValueError, match="same shape"):
        IT.siglip(a, b[:, :2], 1.0, 0.0)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        IT.clip(a[None], b[None], 1.0)
    with pytest.raises(ValueError, match="logit_scale"):
        IT.clip(a, b, jnp.ones(2))
    with pytest.raises(ValueError, match="logit_bias"):
        IT.siglip(a, b, 1.0, jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match="block_size"):
        IT.siglip(a, b, 1.0, 0.0, block_size=0)
