"""Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words").

Images (N, H, W, C) are cut into non-overlapping ``patch_size`` x ``patch_size`` patches,
each linearly embedded (a stride-``patch_size`` convolution); a learnable class token is
prepended, a position embedding added, then ``depth`` pre-norm blocks
``x = x + MHA(LN(x)); x = x + MLP(LN(x))`` (MLP: Linear(mlp_ratio * width) - GELU - Linear),
a final LayerNorm, and the class token's output is the feature (N, width). LayerNorm
epsilon 1e-6, exact GELU and biased q/k/v projections as timm's ``VisionTransformer``; no
dropout. ViT-S/16 (width 384, depth 12, 6 heads) has 21,665,664 parameters at 224 px: timm's
``vit_small_patch16_224`` count (22,050,664) without its 1000-way head (385,000).

Two options of MoCo v3 (Chen, Xie & He 2021, section 5 and ``vits.py`` of
facebookresearch/moco-v3):

- ``posemb="sincos2d"``: a fixed 2-D sine-cosine position embedding (zero for the class
  token) instead of the learned one (``posemb="learn"``, timm's default).
- ``frozen_patch_embedding=True``: a fixed random patch projection ("random patch
  projection", MoCo v3's ``--stop-grad-conv1``), which stabilises self-supervised ViT
  training. The kernel is not a parameter (so no optimiser or weight decay can move it):
  uniform in ``+-sqrt(6 / (3 p^2 + width))`` as the reference initialises it, drawn from
  the fixed key ``jax.random.key(patch_seed)``, so every run and every copy of the network
  (online, EMA target, evaluation) sees the same projection; the bias is zero.

Sizes by name (``create_encoder``): ``vit_tiny`` (192, 12 blocks, 3 heads), ``vit_small``
(384, 12, 6), ``vit_base`` (768, 12, 12); MoCo v3's ViT-S uses 12 heads (``num_heads``).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

POSEMBS = ("learn", "sincos2d")


def sincos_2d_position_embedding(grid_h, grid_w, width, temperature=10000.0):
    """MoCo v3's fixed 2-D sine-cosine embedding, (grid_h * grid_w, width), row-major patches.

    The patch in row ``r``, column ``c`` gets
    ``[sin(r * omega), cos(r * omega), sin(c * omega), cos(c * omega)]`` with
    ``omega_d = temperature ** (-d / (width / 4))``, ``d = 0 .. width/4 - 1``. This is
    ``build_2d_sincos_position_embedding`` of moco-v3's ``vits.py`` on its square grids (its
    ``torch.meshgrid(grid_w, grid_h)`` flattens column-major, so the half it calls ``w``
    follows the row of timm's row-major patch sequence).
    """
    if width % 4:
        raise ValueError(f"The sin-cos position embedding needs a width divisible by 4, got "
                         f"{width}; use model.posemb='learn' or another width.")
    r, c = np.meshgrid(np.arange(grid_h, dtype=np.float32), np.arange(grid_w, dtype=np.float32),
                       indexing="ij")
    omega = 1.0 / temperature ** (np.arange(width // 4, dtype=np.float32) / (width // 4))
    out_r = r.reshape(-1, 1) * omega[None, :]
    out_c = c.reshape(-1, 1) * omega[None, :]
    return np.concatenate([np.sin(out_r), np.cos(out_r), np.sin(out_c), np.cos(out_c)], axis=1)


def fixed_patch_kernel(patch_size, channels, width, seed=0):
    """MoCo v3's random patch projection kernel (p, p, C, width), a constant of its shapes."""
    bound = math.sqrt(6.0 / (3 * patch_size * patch_size + width))
    shape = (patch_size, patch_size, channels, width)
    return jax.random.uniform(jax.random.key(seed), shape, jnp.float32, -bound, bound)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + MHA(LN(x))`` then ``x + MLP(LN(x))``.

    Attention as timm's: one fused ``qkv`` projection (with bias), scaled dot-product
    attention per head, an output projection ``proj``. Weights are Xavier-uniform, the
    ``qkv`` one as three separate ``width x width`` matrices (MoCo v3's ``vits.py``).
    """

    num_heads: int
    mlp_ratio: int = 4
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        n, t, width = x.shape
        xavier = nn.initializers.xavier_uniform()
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm1")(x)
        qkv = nn.Dense(3 * width, dtype=self.dtype, kernel_init=_uniform(math.sqrt(3 / width)),
                       name="qkv")(y)
        q, k, v = jnp.split(qkv.reshape(n, t, 3 * self.num_heads, width // self.num_heads),
                            3, axis=2)
        y = jax.nn.dot_product_attention(q, k, v).reshape(n, t, width)
        x = x + nn.Dense(width, dtype=self.dtype, kernel_init=xavier, name="proj")(y)
        y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm2")(x)
        y = nn.Dense(self.mlp_ratio * width, dtype=self.dtype, kernel_init=xavier,
                     name="fc1")(y)
        y = nn.gelu(y, approximate=False)
        return x + nn.Dense(width, dtype=self.dtype, kernel_init=xavier, name="fc2")(y)


class ViT(nn.Module):
    """ViT backbone: images (N, H, W, C) -> class-token features (N, width)."""

    width: int = 384
    depth: int = 12
    num_heads: int = 6
    patch_size: int = 16
    mlp_ratio: int = 4
    posemb: str = "learn"
    frozen_patch_embedding: bool = False
    patch_seed: int = 0
    dtype: jnp.dtype = jnp.float32
    remat: bool = False  # recompute each block's activations in the backward pass

    @nn.compact
    def __call__(self, x, train: bool = True):
        del train  # no BatchNorm, no dropout: the same function in training and evaluation
        n, h, w, c = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"ViT: the image size {h}x{w} is not a multiple of the patch size "
                             f"{p}; set model.patch_size to a divisor of the image size (e.g. 2 "
                             "or 4 for 8x8 digits, 16 for 224 px).")
        if self.posemb not in POSEMBS:
            raise ValueError(f"ViT: posemb must be one of {POSEMBS}, got {self.posemb!r}.")
        if self.width % self.num_heads:
            raise ValueError(f"ViT: width {self.width} is not divisible by num_heads "
                             f"{self.num_heads}.")
        x = x.astype(self.dtype)
        if self.frozen_patch_embedding:
            kernel = fixed_patch_kernel(p, c, self.width, self.patch_seed).astype(self.dtype)
            x = jax.lax.conv_general_dilated(x, kernel, (p, p), "VALID",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        else:
            bound = math.sqrt(6.0 / (3 * p * p + self.width))
            x = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
                        kernel_init=_uniform(bound), name="patch_embedding")(x)
        grid_h, grid_w = h // p, w // p
        x = x.reshape(n, grid_h * grid_w, self.width)
        cls = self.param("cls", nn.initializers.zeros, (self.width,), jnp.float32)
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (n, 1, self.width)), x],
                            axis=1)
        if self.posemb == "learn":
            pos = self.param("pos_embedding", nn.initializers.normal(0.02),
                             (grid_h * grid_w + 1, self.width), jnp.float32)
        else:
            table = sincos_2d_position_embedding(grid_h, grid_w, self.width)
            pos = jnp.concatenate([jnp.zeros((1, self.width)), table])
        x = x + pos.astype(self.dtype)[None]
        block = nn.remat(EncoderBlock) if self.remat else EncoderBlock
        for i in range(self.depth):
            x = block(self.num_heads, self.mlp_ratio, self.dtype, name=f"block_{i}")(x)
        x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="norm")(x)
        return x[:, 0].astype(jnp.float32)


def _uniform(bound):
    """Initialiser: uniform in ``[-bound, bound]``."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
