"""Projector and predictor heads: MLPs with BatchNorm, as in SimCLR, BYOL and their successors."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
    """``[Linear -> BatchNorm -> ReLU] x len(hidden_dims) -> Linear(output_dim) [-> BatchNorm]``.

    - SimCLR (Chen et al. 2020): hidden (2048,), output 128.
    - BYOL (Grill et al. 2020) projector and predictor: hidden (4096,), output 256.
    - SimSiam / Barlow Twins / VICReg use deeper variants with ``output_norm=True``.
    Hidden linear layers have no bias when followed by BatchNorm (the bias would be cancelled).
    """

    hidden_dims: Sequence[int]
    output_dim: int
    use_batch_norm: bool = True
    output_norm: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = x.astype(self.dtype)
        for width in self.hidden_dims:
            x = nn.Dense(width, use_bias=not self.use_batch_norm, dtype=self.dtype)(x)
            if self.use_batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
            x = nn.relu(x)
        x = nn.Dense(self.output_dim, use_bias=not self.output_norm, dtype=self.dtype)(x)
        if self.output_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
        return x.astype(jnp.float32)
