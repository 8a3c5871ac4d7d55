"""Flax (linen) backbones and heads. Import-light: no TensorFlow."""

import jax.numpy as jnp

from cl_jax.models.bert import BertEncoder
from cl_jax.models.convnet import ConvNet
from cl_jax.models.heads import MLP
from cl_jax.models.norm import NORMS
from cl_jax.models.resnet import ResNet
from cl_jax.models.text import TextTransformer
from cl_jax.models.vit import ViT

# name -> (width, depth, heads): DeiT / timm sizes (Touvron et al. 2021, table 1).
VIT_SIZES = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6), "vit_base": (768, 12, 12)}

ENCODERS = ("convnet", "resnet18", "resnet34", "resnet50", "resnet101", *VIT_SIZES, "text")

TEXT_FIELDS = ("vocab_size", "width", "depth", "num_heads", "mlp_ratio", "max_len", "causal",
               "pooling", "output_dim", "dropout_rate", "pad_id")


def create_text_encoder(text, dtype=jnp.float32, remat=False):
    """The text tower ``config.model.text`` describes: a ``TextTransformer`` (token ids ->
    pooled features) with its ``TEXT_FIELDS``."""
    return TextTransformer(**{k: text[k] for k in TEXT_FIELDS}, dtype=dtype, remat=remat)


def create_encoder(name, *, stem="imagenet", widths=(32, 64, 128), width_multiplier=1,
                   zero_init_residual=False, dtype=jnp.float32, patch_size=16, num_heads=0,
                   posemb="learn", frozen_patch_embedding=False, remat=False, norm="batch"):
    """A backbone by name: ``convnet``, ``resnet{18,34,50,101}`` or ``vit_{tiny,small,base}``.

    ``stem``, ``width_multiplier`` and ``zero_init_residual`` are ResNet options, ``widths``
    the ConvNet's, ``norm`` (``batch`` / ``layer``, ``cl_jax.models.norm``) both's;
    ``patch_size``, ``num_heads`` (0: the size's default), ``posemb``
    (``learn`` / ``sincos2d``) and ``frozen_patch_embedding`` are ViT options (see
    ``cl_jax.models.vit``). ``dtype`` is the compute dtype (parameters stay float32;
    features come out float32); ``remat`` recomputes ResNet / ViT block activations in the
    backward pass instead of keeping them (less memory, about a third more compute).
    """
    if name == "convnet":
        return ConvNet(widths=tuple(widths), dtype=dtype, norm=norm)
    if name.startswith("resnet") and name[len("resnet"):].isdigit():
        depth = int(name[len("resnet"):])
        return ResNet(depth=depth, stem=stem, width_multiplier=width_multiplier,
                      zero_init_residual=zero_init_residual, dtype=dtype, remat=remat, norm=norm)
    if name in VIT_SIZES:
        width, depth, heads = VIT_SIZES[name]
        return ViT(width=width, depth=depth, num_heads=num_heads or heads,
                   patch_size=patch_size, posemb=posemb,
                   frozen_patch_embedding=frozen_patch_embedding, dtype=dtype, remat=remat)
    raise ValueError(f"Unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}.")


__all__ = [
    "NORMS", "BertEncoder", "ConvNet", "MLP", "ResNet", "TextTransformer", "ViT",
    "create_encoder", "create_text_encoder", "ENCODERS", "TEXT_FIELDS", "VIT_SIZES"]
