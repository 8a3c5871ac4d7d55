"""A small ConvNet for tiny images (the embedded digits data set, unit tests)."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from cl_jax.models.norm import normalization


class ConvNet(nn.Module):
    """Conv3x3-BN-ReLU stages, each but the first halving the resolution; global mean pool.

    With the default widths (32, 64, 128) on 16x16 inputs this has ~94k parameters and
    produces 128-d features. ``return_maps=True`` also returns every stage's feature map,
    ``(features, [map_1, ..., map_S])`` (the local features of Deep InfoMax and AMDIM).
    """

    widths: Sequence[int] = (32, 64, 128)
    dtype: jnp.dtype = jnp.float32
    norm: str = "batch"  # or "layer" (cl_jax.models.norm)

    @nn.compact
    def __call__(self, x, train: bool = True, return_maps: bool = False):
        x = x.astype(self.dtype)
        maps = []
        for stage, width in enumerate(self.widths):
            strides = 1 if stage == 0 else 2
            x = nn.Conv(width, (3, 3), strides, padding=1, use_bias=False, dtype=self.dtype)(x)
            x = normalization(self.norm, train, self.dtype)()(x)
            x = nn.relu(x)
            maps.append(x)
        features = jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
        return (features, maps) if return_maps else features
