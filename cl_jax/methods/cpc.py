"""Contrastive Predictive Coding v2 (Hénaff, Srinivas, De Fauw, Razavi, Doersch, Eslami & van
den Oord 2020, "Data-Efficient Image Recognition with Contrastive Predictive Coding", ICML,
arXiv:1905.09272; CPC: van den Oord, Li & Vinyals 2018, arXiv:1807.03748).

Each image is cut into an overlapping grid of ``patch_size`` patches at ``patch_stride``
(``grid x grid``), every patch augmented on its own (``patch_shift``: its window moved by up
to so many pixels, CPC's spatial jitter; ``patch_flip_prob``,
``patch_jitter``: brightness and contrast drawn per patch; the paper's per-patch colour
dropping with ``patch_drop_colour_prob`` on RGB) and encoded alone by the encoder, which
should normalise with LayerNorm (``model.norm="layer"``, as the paper does, so that the
patches cannot share statistics): latents ``z[b, i, j]``. A masked, PixelCNN-style context
network (``context_layers`` residual blocks of row-causal 3x3 convolutions of
``context_width`` channels) summarises, for each position, the latents of its own row and
the rows above: ``c[b, i, j]`` never sees a row below ``i`` (whether CPC v2's context also
leaves out its own row was not checked; predicting rows ``i + k``, ``k >= 1``, is causal
either way). From ``c[b, i, j]`` a linear map per step ``W_k`` predicts the latent ``k``
rows below, ``k = 1 .. pred_steps``, scored with InfoNCE against every latent of the batch
(:func:`cl_jax.losses.cpc_info_nce`). Only this top-down direction is implemented; CPC v2
also predicts from below, left and right.

The representation the evaluators see is the mean over the grid of the patch latents ``z``
(CPC v1's linear classifier reads the spatially pooled encoder features; v2's was not
checked).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.methods.base import LossAux, Method, probe_logits_of


def grid_size(image_size, patch_size, stride):
    """Patches per side, or a ConfigError if the grid does not fit the image exactly."""
    if patch_size > image_size or (image_size - patch_size) % stride:
        raise ConfigError(
            f"A grid of {patch_size}x{patch_size} patches at stride {stride} does not fit a "
            f"{image_size}x{image_size} image: (size - patch_size) must be a multiple of the "
            "stride; change method.patch_size / method.patch_stride or the view's size.")
    return (image_size - patch_size) // stride + 1


def extract_patches(images, patch_size, stride):
    """(B, H, W, C) -> (B, n, n, patch_size, patch_size, C), row-major over the grid."""
    n = (images.shape[1] - patch_size) // stride + 1
    rows = [jnp.stack([images[:, i * stride:i * stride + patch_size,
                              j * stride:j * stride + patch_size] for j in range(n)], axis=1)
            for i in range(n)]
    return jnp.stack(rows, axis=1)


def jittered_patches(images, key, patch_size, stride, shift):
    """``extract_patches`` with each patch's window moved by its own random offset of up to
    ``shift`` pixels in each direction (the image zero-padded by ``shift``): CPC's spatial
    jitter (van den Oord et al. 2018, section 3.2), so that overlapping patches do not share
    exactly the same pixels."""
    b, h = images.shape[:2]
    n = (h - patch_size) // stride + 1
    padded = jnp.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
    offsets = jax.random.randint(key, (b, n, n, 2), -shift, shift + 1)
    starts = jnp.arange(n) * stride + shift
    rows = starts[None, :, None] + offsets[..., 0]
    cols = starts[None, None, :] + offsets[..., 1]

    def window(image, row, col):
        return jax.lax.dynamic_slice(image, (row, col, 0),
                                     (patch_size, patch_size, image.shape[-1]))

    per_image = jax.vmap(jax.vmap(jax.vmap(window, (None, 0, 0)), (None, 0, 0)), (0, 0, 0))
    return per_image(padded, rows, cols)


def augment_patches(patches, key, flip_prob, jitter, drop_colour_prob):
    """Per-patch augmentation of (..., P, P, C) patches (values standardised): a horizontal
    flip, brightness and contrast factors in ``[1 - jitter, 1 + jitter]``, and (RGB) the
    paper's colour dropping, all but one random channel set to zero."""
    k_flip, k_bright, k_contrast, k_drop, k_keep = jax.random.split(key, 5)
    batch_shape = patches.shape[:-3]
    if flip_prob:
        flip = jax.random.bernoulli(k_flip, flip_prob, batch_shape)[..., None, None, None]
        patches = jnp.where(flip, patches[..., ::-1, :], patches)
    if jitter:
        shape = (*batch_shape, 1, 1, 1)
        contrast = jax.random.uniform(k_contrast, shape, minval=1 - jitter, maxval=1 + jitter)
        mean = jnp.mean(patches, axis=(-3, -2, -1), keepdims=True)
        patches = (patches - mean) * contrast + mean
        patches = patches + jax.random.uniform(k_bright, shape, minval=-jitter, maxval=jitter)
    if drop_colour_prob and patches.shape[-1] > 1:
        drop = jax.random.bernoulli(k_drop, drop_colour_prob, batch_shape)[..., None, None, None]
        keep = jax.random.randint(k_keep, batch_shape, 0, patches.shape[-1])
        only = jax.nn.one_hot(keep, patches.shape[-1])[..., None, None, :]
        patches = jnp.where(drop, patches * only, patches)
    return patches


class RowCausalConv(nn.Module):
    """A 3x3 convolution whose output at row i sees input rows i-2 .. i only (zero padding
    above, none below; 'same' across columns)."""

    features: int

    @nn.compact
    def __call__(self, x):
        x = jnp.pad(x, ((0, 0), (2, 0), (1, 1), (0, 0)))
        return nn.Conv(self.features, (3, 3), padding="VALID")(x)


class ContextNetwork(nn.Module):
    """PixelCNN-style: a linear map, then residual blocks of two row-causal convolutions."""

    width: int
    num_layers: int

    @nn.compact
    def __call__(self, z):
        h = nn.Dense(self.width)(z)
        for _ in range(self.num_layers):
            h = h + RowCausalConv(self.width)(nn.relu(RowCausalConv(self.width)(nn.relu(h))))
        return h


class CPCNetwork(nn.Module):
    encoder: nn.Module
    patch_size: int
    patch_stride: int
    context_width: int
    context_layers: int
    pred_steps: int
    num_classes: int = 0

    def latents(self, images, train):
        patches = images if images.ndim == 6 else extract_patches(
            images, self.patch_size, self.patch_stride)
        b, n = patches.shape[:2]
        z = self.encoder(patches.reshape(b * n * n, *patches.shape[3:]), train)
        return z.reshape(b, n, n, -1)

    @nn.compact
    def __call__(self, images, train: bool = True):
        """``images``: (B, H, W, C), or their patches (B, n, n, P, P, C)."""
        z = self.latents(images, train)
        c = ContextNetwork(self.context_width, self.context_layers, name="context")(z)
        predictions = [nn.Dense(z.shape[-1], use_bias=False, name=f"predict_{k + 1}")(c)
                       for k in range(self.pred_steps)]
        features = jnp.mean(z, axis=(1, 2))
        out = {"features": features, "latents": z, "context": c,
               "predictions": jnp.stack(predictions)}
        if self.num_classes:
            out["probe_logits"] = nn.Dense(self.num_classes, name="probe")(
                jax.lax.stop_gradient(features))
        return out

    def features(self, images, train: bool = False):
        return jnp.mean(self.latents(images, train), axis=(1, 2))


class CPC(Method):
    name = "cpc"
    min_views = 1

    @classmethod
    def validate(cls, config):
        m = config.method
        n = grid_size(config.augment.view1.size, m.patch_size, m.patch_stride)
        if config.eval.image_size != config.augment.view1.size:
            raise ConfigError(f"cpc cuts evaluation images into the training grid: set "
                              f"--config.eval.image_size={config.augment.view1.size} (the "
                              "view's size).")
        if not 1 <= m.pred_steps < n:
            raise ConfigError(f"method.pred_steps={m.pred_steps} must be between 1 and "
                              f"{n - 1}: the grid has {n} rows.")

    def build_network(self, encoder, num_classes):
        c = self.config
        return CPCNetwork(encoder=encoder, patch_size=c.patch_size, patch_stride=c.patch_stride,
                          context_width=c.context_width, context_layers=c.context_layers,
                          pred_steps=c.pred_steps, num_classes=num_classes)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        c = self.config
        shift_key, augment_key = jax.random.split(rng)
        images = batch["views"][0]
        if c.patch_shift:
            patches = jittered_patches(images, shift_key, c.patch_size, c.patch_stride,
                                       c.patch_shift)
        else:
            patches = extract_patches(images, c.patch_size, c.patch_stride)
        patches = augment_patches(patches, augment_key, c.patch_flip_prob, c.patch_jitter,
                                  c.patch_drop_colour_prob)
        outputs, batch_stats = self.forward(params, batch_stats, (patches,))
        out = outputs[0]
        loss = losses.cpc_info_nce(out["predictions"], out["latents"])
        return loss, LossAux(metrics={}, batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 1), probe_views=1)
