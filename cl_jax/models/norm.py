"""The normalisation layer of the conv encoders: BatchNorm (the default) or LayerNorm.

LayerNorm (Ba, Kiros & Hinton 2016) normalises each example's activations over all of a
layer's units (height, width and channels), with a scale and bias per channel: CPC v2
(Hénaff et al. 2020, section 4) uses it in place of BatchNorm so that the patches of one
image cannot share statistics. It keeps no batch statistics.
"""

from functools import partial

import flax.linen as nn

NORMS = ("batch", "layer")


def normalization(kind, train, dtype):
    """A constructor of the ``kind`` normalisation (``scale_init`` and ``name`` pass through)."""
    if kind == "batch":
        return partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, dtype=dtype)
    if kind == "layer":
        return partial(nn.LayerNorm, reduction_axes=(-3, -2, -1), dtype=dtype)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
