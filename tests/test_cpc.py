"""CPC v2 (Hénaff et al. 2020): the patch grid, the row-causal context (a patch the context
must not see does not change the predictions), LayerNorm's independence of the batch, the
grid InfoNCE against float64 NumPy (value and gradient), and one clear error per bad grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import numeric_grad, random_batch, tiny_config

from cl_jax import train
from cl_jax.errors import ConfigError
from cl_jax.losses.mutual_information import cpc_info_nce
from cl_jax.methods.cpc import extract_patches, jittered_patches


def cpc_numpy(predictions, latents):
    k_max, b, r, c, _ = predictions.shape
    candidates = latents.reshape(b * r * c, -1).astype(np.float64)
    terms = []
    for k in range(1, k_max + 1):
        for bi in range(b):
            for i in range(r - k):
                for j in range(c):
                    logits = candidates @ predictions[k - 1, bi, i, j].astype(np.float64)
                    target = (bi * r + i + k) * c + j
                    terms.append(np.log(np.sum(np.exp(logits))) - logits[target])
    return np.mean(terms)


def test_grid_info_nce_matches_float64_numpy():
    rng = np.random.default_rng(0)
    predictions = rng.normal(size=(2, 2, 3, 2, 3)).astype(np.float32)
    latents = rng.normal(size=(2, 3, 2, 3)).astype(np.float32)
    value, grads = jax.jit(jax.value_and_grad(cpc_info_nce, argnums=(0, 1)))(predictions,
                                                                              latents)
    np.testing.assert_allclose(float(value), cpc_numpy(predictions, latents), rtol=1e-5)
    np.testing.assert_allclose(grads[0], numeric_grad(lambda p: cpc_numpy(p, latents),
                                                      predictions), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1], numeric_grad(lambda z: cpc_numpy(predictions, z),
                                                      latents), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="more than 3 rows"):
        cpc_info_nce(np.zeros((3, 2, 3, 2, 3)), latents)


def test_patches_and_their_jitter():
    images = jnp.arange(2 * 8 * 8).reshape(2, 8, 8, 1).astype(jnp.float32)
    patches = extract_patches(images, 4, 2)
    assert patches.shape == (2, 3, 3, 4, 4, 1)
    np.testing.assert_array_equal(patches[1, 2, 1], images[1, 4:8, 2:6])
    same = jittered_patches(images, jax.random.key(0), 4, 2, 0)
    np.testing.assert_array_equal(same, patches)
    moved = np.asarray(jittered_patches(images + 1, jax.random.key(1), 4, 2, 1))
    padded = np.pad(np.asarray(images) + 1, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for b, i, j in np.ndindex(2, 3, 3):  # each a window of the padded image near its place
        found = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                 if np.array_equal(moved[b, i, j], padded[b, 1 + 2 * i + dy:5 + 2 * i + dy,
                                                          1 + 2 * j + dx:5 + 2 * j + dx])]
        assert found, (b, i, j)


def setup():
    exp = train.create_experiment(tiny_config("cpc"))
    state = jax.device_get(train.initial_state(exp))
    images = jnp.asarray(random_batch(exp.config, 4)["views"][0])
    apply = jax.jit(lambda x: exp.method.network.apply(
        {"params": state.params, "batch_stats": state.batch_stats}, x, train=True,
        mutable=["batch_stats"])[0])
    return exp, state, images, apply


def test_a_patch_the_context_must_not_see_changes_no_prediction():
    exp, state, images, apply = setup()
    out = apply(images)
    # Pixel rows 6-7 belong to the last row of patches only (rows 4-7): rows 0 and 1 of the
    # context, and so every prediction made from them, must not change.
    changed = apply(images.at[:, 6:].set(5.0))
    np.testing.assert_array_equal(changed["context"][:, :2], out["context"][:, :2])
    np.testing.assert_array_equal(changed["predictions"][:, :, :2],
                                  out["predictions"][:, :, :2])
    assert not np.allclose(changed["context"][:, 2], out["context"][:, 2])
    # A patch of the row itself is seen: the context is not trivially constant.
    assert not np.allclose(apply(images.at[:, 2:4].set(5.0))["context"][:, 1],
                           out["context"][:, 1])
    # LayerNorm: an image's latents do not depend on the other images of the batch.
    others = apply(images.at[1:].set(-3.0))
    np.testing.assert_allclose(others["latents"][0], out["latents"][0], rtol=1e-5, atol=1e-6)
    assert state.batch_stats == {} or not jax.tree.leaves(state.batch_stats["encoder"])
    # The evaluated feature: the mean over the grid of the patch latents.
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    np.testing.assert_allclose(exp.method.image_features(variables, images),
                               np.mean(out["latents"], axis=(1, 2)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("overrides,message", [
    (dict(patch_size=5), "does not fit a 8x8 image"),
    (dict(patch_size=10), "does not fit"),
    (dict(pred_steps=3), "pred_steps=3 must be between 1 and 2"),
])
def test_bad_grids_are_one_clear_error(overrides, message):
    config = tiny_config("cpc")
    config.method.update(overrides)
    with pytest.raises(ConfigError, match=message):
        train.create_experiment(config)
    config = tiny_config("cpc")
    config.eval.image_size = 16
    with pytest.raises(ConfigError, match="eval.image_size=8"):
        train.create_experiment(config)
