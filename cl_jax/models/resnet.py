"""ResNet-18/34/50/101 (He et al. 2016) with an ImageNet or a CIFAR stem.

The ImageNet stem is a 7x7 stride-2 convolution and a 3x3 stride-2 max-pool; the CIFAR stem
(as in the SimCLR paper's CIFAR experiments and solo-learn) is a 3x3 stride-1 convolution
without max-pool. BatchNorm uses momentum 0.9 and epsilon 1e-5 (the SimCLR/BYOL references;
``norm="layer"``: LayerNorm instead, ``cl_jax.models.norm``);
``zero_init_residual`` sets the last BatchNorm scale of each block to zero (Goyal et al. 2017).
The output is the globally average-pooled representation (512 or 2048 wide).
"""

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax.numpy as jnp

from cl_jax.models.norm import normalization

STAGE_SIZES = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}


class BasicBlock(nn.Module):
    filters: int
    strides: int
    zero_init_residual: bool
    dtype: jnp.dtype
    norm: str = "batch"

    @nn.compact
    def __call__(self, x, train):
        conv = partial(nn.Conv, use_bias=False, dtype=self.dtype)
        norm = normalization(self.norm, train, self.dtype)
        last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        residual = x
        y = conv(self.filters, (3, 3), self.strides, padding=1)(x)
        y = nn.relu(norm()(y))
        y = conv(self.filters, (3, 3), padding=1)(y)
        y = norm(scale_init=last_scale)(y)
        if residual.shape != y.shape:
            residual = conv(self.filters, (1, 1), self.strides, name="shortcut_conv")(residual)
            residual = norm(name="shortcut_bn")(residual)
        return nn.relu(residual + y)


class BottleneckBlock(nn.Module):
    filters: int
    strides: int
    zero_init_residual: bool
    dtype: jnp.dtype
    norm: str = "batch"

    @nn.compact
    def __call__(self, x, train):
        conv = partial(nn.Conv, use_bias=False, dtype=self.dtype)
        norm = normalization(self.norm, train, self.dtype)
        last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        residual = x
        y = nn.relu(norm()(conv(self.filters, (1, 1))(x)))
        # Stride on the 3x3 convolution ("ResNet v1.5", as torchvision and the BYOL code).
        y = nn.relu(norm()(conv(self.filters, (3, 3), self.strides, padding=1)(y)))
        y = norm(scale_init=last_scale)(conv(4 * self.filters, (1, 1))(y))
        if residual.shape != y.shape:
            residual = conv(4 * self.filters, (1, 1), self.strides, name="shortcut_conv")(residual)
            residual = norm(name="shortcut_bn")(residual)
        return nn.relu(residual + y)


class ResNet(nn.Module):
    """ResNet backbone: images (N, H, W, C) -> pooled features (N, width); with
    ``return_maps=True``, ``(features, [map_1, ..., map_4])``, each stage's output."""

    depth: int = 50
    stem: str = "imagenet"
    width_multiplier: int = 1
    zero_init_residual: bool = False
    dtype: jnp.dtype = jnp.float32
    stage_sizes: Sequence[int] | None = None
    remat: bool = False  # recompute each block's activations in the backward pass
    norm: str = "batch"  # or "layer" (cl_jax.models.norm)

    @nn.compact
    def __call__(self, x, train: bool = True, return_maps: bool = False):
        if self.depth not in STAGE_SIZES:
            raise ValueError(f"ResNet depth must be one of {sorted(STAGE_SIZES)}, got {self.depth}")
        if self.stem not in ("imagenet", "cifar"):
            raise ValueError(f"ResNet stem must be 'imagenet' or 'cifar', got {self.stem!r}")
        block = BasicBlock if self.depth < 50 else BottleneckBlock
        block_name = block.__name__  # remat or not, the same parameter names
        if self.remat:
            block = nn.remat(block, static_argnums=(2,))  # (self, x, train): train is static
        width = 64 * self.width_multiplier
        x = x.astype(self.dtype)
        if self.stem == "imagenet":
            x = nn.Conv(width, (7, 7), 2, padding=3, use_bias=False, dtype=self.dtype)(x)
        else:
            x = nn.Conv(width, (3, 3), 1, padding=1, use_bias=False, dtype=self.dtype)(x)
        x = normalization(self.norm, train, self.dtype)()(x)
        x = nn.relu(x)
        if self.stem == "imagenet":
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        count, maps = 0, []
        for stage, num_blocks in enumerate(self.stage_sizes or STAGE_SIZES[self.depth]):
            for i in range(num_blocks):
                strides = 2 if stage > 0 and i == 0 else 1
                x = block(width * 2**stage, strides, self.zero_init_residual, self.dtype,
                          self.norm, name=f"{block_name}_{count}")(x, train)
                count += 1
            maps.append(x)
        features = jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
        return (features, maps) if return_maps else features
