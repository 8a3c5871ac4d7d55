"""The Vision Transformer: shapes, the ViT-S/16 parameter count, the forward pass against a
float64 NumPy ViT, MoCo v3's options, and real MoCo v3 train steps with a small ViT on 8x8
digits-sized images over 8 devices (their loss recomputed in NumPy)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch, tiny_config

from cl_jax import models, optim, parallel
from cl_jax.methods import create_method
from cl_jax.models import vit as vit_module
from cl_jax.state import init_train_state, make_train_step


def param_count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def abstract_init(model, x):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


def test_vit_small_patch16_parameter_count_matches_timm():
    # timm's vit_small_patch16_224 has 22,050,664 parameters including its 1000-way head
    # (384 * 1000 + 1000 = 385,000).
    model = models.create_encoder("vit_small")
    x = jnp.zeros((2, 224, 224, 3))
    variables = abstract_init(model, x)
    assert param_count(variables["params"]) == 22_050_664 - 385_000
    assert jax.eval_shape(lambda v: model.apply(v, x), variables).shape == (2, 384)
    # MoCo v3's ViT-S: 12 heads (same count), fixed sin-cos positions and patch projection.
    moco = models.create_encoder("vit_small", num_heads=12, posemb="sincos2d",
                                 frozen_patch_embedding=True)
    frozen = param_count(abstract_init(moco, x)["params"])
    assert frozen == 22_050_664 - 385_000 - 197 * 384 - (16 * 16 * 3 * 384 + 384)


@pytest.mark.parametrize("name,width", [("vit_tiny", 192), ("vit_base", 768)])
def test_vit_sizes(name, width):
    model = models.create_encoder(name, patch_size=4)
    x = jnp.zeros((3, 8, 8, 1))
    assert jax.eval_shape(lambda v: model.apply(v, x), abstract_init(model, x)).shape == (3, width)


def layer_norm(x, params, eps=1e-6):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * params["scale"] + params["bias"]


def dense(x, params):
    return x @ np.asarray(params["kernel"], np.float64) + params["bias"]


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


gelu = np.vectorize(lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2))))  # exact GELU


def reference_vit(params, images, patch_size, num_heads):
    """ViT (Dosovitskiy et al. 2021) in float64, as timm: patches of ``p x p`` flattened
    (row, column, channel) and embedded; class token first; learned positions; pre-norm
    blocks ``x + proj(MHA(LN(x)))``, ``x + fc2(GELU(fc1(LN(x))))``; final LN of the class
    token."""
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    n, h, w, c = images.shape
    p = patch_size
    patches = np.asarray(images, np.float64).reshape(n, h // p, p, w // p, p, c)
    patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(n, -1, p * p * c)
    embed = params["patch_embedding"]
    x = patches @ embed["kernel"].reshape(p * p * c, -1) + embed["bias"]
    width = x.shape[-1]
    x = np.concatenate([np.broadcast_to(params["cls"], (n, 1, width)), x], axis=1)
    x = x + params["pos_embedding"]
    head = width // num_heads
    blocks = sorted((k for k in params if k.startswith("block_")), key=lambda k: int(k[6:]))
    for name in blocks:
        block = params[name]
        qkv = dense(layer_norm(x, block["norm1"]), block["qkv"])
        q, k, v = (qkv[..., i * width:(i + 1) * width].reshape(n, -1, num_heads, head)
                   .transpose(0, 2, 1, 3) for i in range(3))
        attention = softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(head)) @ v
        x = x + dense(attention.transpose(0, 2, 1, 3).reshape(n, -1, width), block["proj"])
        x = x + dense(gelu(dense(layer_norm(x, block["norm2"]), block["fc1"])), block["fc2"])
    return layer_norm(x, params["norm"])[:, 0]


def test_small_vit_on_digits_sized_images():
    x = jax.random.normal(jax.random.key(0), (5, 8, 8, 1))

    @jax.jit  # one program for everything: compiling dominates at this size
    def run(x):
        results = {}
        for patch_size in (2, 4):
            model = models.ViT(width=32, depth=2, num_heads=4, patch_size=patch_size)
            params = model.init(jax.random.key(1), x)["params"]
            loss = lambda p, m=model: jnp.sum(m.apply({"params": p}, x) ** 2)
            results[patch_size] = (params, model.apply({"params": params}, x),
                                   model.apply({"params": params}, x[:1]), jax.grad(loss)(params))
        return results

    for patch_size, (params, out, first, grads) in run(x).items():
        tokens = (8 // patch_size) ** 2 + 1
        assert params["pos_embedding"].shape == (tokens, 32)
        assert params["patch_embedding"]["kernel"].shape == (patch_size, patch_size, 1, 32)
        assert out.shape == (5, 32)
        np.testing.assert_allclose(out, reference_vit(params, x, patch_size, num_heads=4),
                                   rtol=1e-4, atol=1e-5)
        # One example's feature depends on that example only (no batch statistics).
        np.testing.assert_allclose(first, out[:1], rtol=1e-5, atol=1e-6)
        assert all(np.all(np.isfinite(g)) and np.any(g != 0) for g in jax.tree.leaves(grads))


def test_sincos_position_embedding_formula():
    table = vit_module.sincos_2d_position_embedding(2, 3, 8)
    assert table.shape == (6, 8)
    omega = 1.0 / 10000.0 ** (np.arange(2) / 2)
    for i in range(2):
        for j in range(3):  # row-major patches: index i * 3 + j is row i, column j
            want = np.concatenate([np.sin(i * omega), np.cos(i * omega), np.sin(j * omega),
                                   np.cos(j * omega)])
            np.testing.assert_allclose(table[i * 3 + j], want, rtol=1e-6, atol=1e-7)
    # moco-v3's construction on a square grid, transcribed: meshgrid(grid_w, grid_h), 'ij'.
    grid_w, grid_h = np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij")
    out_w, out_h = grid_w.reshape(-1, 1) * omega, grid_h.reshape(-1, 1) * omega
    reference = np.concatenate([np.sin(out_w), np.cos(out_w), np.sin(out_h), np.cos(out_h)], 1)
    np.testing.assert_allclose(vit_module.sincos_2d_position_embedding(4, 4, 8), reference,
                               rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="divisible by 4"):
        vit_module.sincos_2d_position_embedding(2, 2, 6)


def test_frozen_patch_embedding_is_a_constant_and_gets_no_parameters():
    model = models.ViT(width=16, depth=1, num_heads=2, patch_size=2, posemb="sincos2d",
                       frozen_patch_embedding=True)
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    out, variables = jax.jit(lambda x: model.init_with_output(jax.random.key(1), x))(x)
    assert "patch_embedding" not in variables["params"]
    assert "pos_embedding" not in variables["params"]
    assert out.shape == (2, 16) and np.all(np.isfinite(out))
    kernel = vit_module.fixed_patch_kernel(2, 3, 16)
    bound = np.sqrt(6.0 / (3 * 4 + 16))
    assert kernel.shape == (2, 2, 3, 16) and float(jnp.max(jnp.abs(kernel))) <= bound
    np.testing.assert_array_equal(kernel, vit_module.fixed_patch_kernel(2, 3, 16))


def test_vit_rejects_image_sizes_that_patches_do_not_tile():
    model = models.create_encoder("vit_tiny", patch_size=3)
    with pytest.raises(ValueError, match="patch_size"):
        model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_info_nce(q, k, t):
    """InfoNCE of each query against all keys, its own the positive (cosine / t)."""
    logits = unit(q) @ unit(k).T / t
    top = logits.max(axis=1)
    return np.mean(np.log(np.exp(logits - top[:, None]).sum(axis=1)) + top - np.diag(logits))


def mocov3_loss(method, state, views, t):
    """MoCo v3's ``2t [InfoNCE(q1, k2) + InfoNCE(q2, k1)]`` (Chen, Xie & He 2021), each view
    its own BatchNorm batch in both networks, from the networks' outputs."""
    def outputs(network, params, batch_stats, view):
        out, _ = network.apply({"params": params, "batch_stats": batch_stats}, view,
                               train=True, mutable=["batch_stats"])
        return out

    q = [outputs(method.network, state.params, state.batch_stats, v)["prediction"]
         for v in views]
    k = [outputs(method.target_network, state.extra["target_params"],
                 state.extra["target_batch_stats"], v)["projection"] for v in views]
    return 2 * t * (reference_info_nce(q[0], k[1], t) + reference_info_nce(q[1], k[0], t))


def test_mocov3_trains_a_small_vit_on_eight_devices():
    c = tiny_config("mocov3")
    c.method.update(proj_hidden_dims=(32, 32), pred_output_norm=True, temperature=0.2)
    encoder = models.ViT(width=32, depth=2, num_heads=4, patch_size=2)
    method = create_method(c.method, encoder, num_classes=10, total_steps=2)
    schedule = optim.learning_rate_schedule(c.optim, c.batch_size, 2, 1.0)
    tx = optim.with_online_probe(optim.create_optimizer(c.optim, schedule), c.probe_lr, 2)
    mesh = parallel.create_mesh()
    assert mesh.size == 8
    state = jax.jit(lambda rng: init_train_state(method, tx, rng,
                                                 {"views": (jnp.zeros((2, 8, 8, 1)),)}),
                    out_shardings=parallel.replicated(mesh))(jax.random.key(0))
    states = [jax.device_get(state)]
    step = jax.jit(make_train_step(method, tx, schedule, seed=0))
    for i in range(2):
        batch = random_batch(c, c.batch_size, seed=i)
        state, metrics = step(state, parallel.to_global(batch, mesh))
        expected = mocov3_loss(method, states[-1], batch["views"], c.method.temperature)
        assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-5)
        states.append(jax.device_get(state))
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(states[0].params["encoder"]),
                                                   jax.tree.leaves(states[2].params["encoder"]),
                                                   strict=True)]
    assert all(moved)
    assert set(states[2].extra["target_params"]) == {"encoder", "projector"}
