"""CLIP, SigLIP and LiT: an image tower and a text tower trained to agree on image-text pairs.

CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision", arXiv:2103.00020): the image encoder and a linear projection give ``u_i``, the
text transformer and its projection give ``v_i``; the loss is the symmetric cross-entropy over
the ``N x N`` cosine similarities scaled by a learned temperature,
:func:`cl_jax.losses.clip` (open_clip ``ClipLoss``). The scale's log is a parameter,
initialised at ``log(1 / 0.07)`` and clamped at ``log(100)`` after every update
(``constrain_params``), as open_clip does.

SigLIP (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training", arXiv:2303.15343):
``method.loss = "siglip"``, the pairwise sigmoid loss :func:`cl_jax.losses.siglip` with a
learned scale (log initialised at ``log 10``) and bias (initialised at -10), big_vision's
defaults; no clamp.

LiT (Zhai et al. 2022, "LiT: Zero-Shot Transfer with Locked-image Text Tuning",
arXiv:2111.07991): ``method.lock_image = True`` runs the image encoder in inference mode
(BatchNorm running averages) under a stop-gradient, and the config freezes it in the
optimiser (``optim.frozen_modules=("encoder",)``) after loading it from another run
(``model.init_from``): only the image projection, the text tower and the scale learn.

Batch fields: ``views`` (one image view per example) and ``tokens`` (the caption's token ids,
padded with the tokenizer's pad id). ``method.ring=True`` computes the loss with
:func:`cl_jax.losses.clip_ring` / ``siglip_ring`` inside ``shard_map`` over the run's mesh, so
no device holds more than an ``N/d x N/d`` block of logits; it needs the batch sharded over
more than one device.

GradCache (``config.grad_cache_chunk=K``, ``cl_jax.grad_cache``): both towers run on chunks
of K pairs, one chunk's activations kept, and the gradient is the full batch's for the text
tower; the image tower's BatchNorm normalises each chunk by its own statistics (ghost batches
of K) and its running averages are updated once per chunk, so with BatchNorm the result is
that of ghost-batch normalisation, not of BatchNorm over the whole batch.

Evaluation: the image evaluators (kNN, linear, few-label) use the image encoder's features;
the zero-shot and retrieval evaluators use ``embed_images`` and ``embed_texts``, the
L2-normalised projections of either tower.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from cl_jax import grad_cache, losses
from cl_jax.errors import ConfigError
from cl_jax.losses._utils import l2_normalize
from cl_jax.methods.base import LossAux, Method
from cl_jax.models.text import TextTransformer

LOSSES = ("clip", "siglip")


class TwoTowers(nn.Module):
    """Image encoder + projection, text transformer (with its projection), scale and bias."""

    encoder: nn.Module
    text: nn.Module
    embed_dim: int
    init_log_scale: float
    init_bias: float | None = None  # None: no bias (CLIP)
    lock_image: bool = False

    def setup(self):
        self.image_projection = nn.Dense(self.embed_dim, use_bias=False)
        self.log_scale = self.param("log_scale", nn.initializers.constant(self.init_log_scale),
                                    ())
        if self.init_bias is not None:
            self.bias = self.param("bias", nn.initializers.constant(self.init_bias), ())

    def __call__(self, images, tokens, train: bool = True):
        return {"image": self.embed_images(images, train), "text": self.embed_texts(tokens, train)}

    def embed_images(self, images, train: bool = False):
        features = self.encoder(images, train and not self.lock_image)
        if self.lock_image:
            features = jax.lax.stop_gradient(features)
        return self.image_projection(features)

    def embed_texts(self, tokens, train: bool = False):
        return self.text(tokens, train)

    def features(self, images, train: bool = False):
        return self.encoder(images, train)

    def scale_and_bias(self):
        return jnp.exp(self.log_scale), (self.bias if self.init_bias is not None else None)


class CLIP(Method):
    name = "clip"
    inputs = ("views", "tokens")
    min_views = 1
    supports_grad_cache = True

    @classmethod
    def validate(cls, config):
        c = config.method
        if c.loss not in LOSSES:
            raise ConfigError(f"Unknown method.loss {c.loss!r}; choose one of "
                              f"{', '.join(LOSSES)}.")
        if c.lock_image and not config.model.init_from:
            raise ConfigError("method.lock_image=True (LiT) locks an image encoder trained "
                              "before: set --config.model.init_from=WORKDIR, the workdir of "
                              "that run.")

    def build_network(self, encoder, num_classes):
        c = self.config
        t = c.text
        text = TextTransformer(vocab_size=t.vocab_size, width=t.width, depth=t.depth,
                               num_heads=t.num_heads, max_len=t.max_len, causal=t.causal,
                               pooling=t.pooling, output_dim=c.embed_dim,
                               dropout_rate=t.dropout_rate, pad_id=t.pad_id)
        siglip = c.loss == "siglip"
        init_log_scale = math.log(c.init_scale if c.init_scale > 0 else (10.0 if siglip
                                                                          else 1 / 0.07))
        return TwoTowers(encoder=encoder, text=text, embed_dim=c.embed_dim,
                         init_log_scale=init_log_scale,
                         init_bias=c.init_bias if siglip else None, lock_image=c.lock_image)

    def sample_inputs(self, config):
        sample = super().sample_inputs(config)
        return dict(sample, tokens=jnp.ones((2, self.config.text.max_len), jnp.int32))

    def init_variables(self, rng, sample):
        return self.network.init(rng, sample["views"][0], sample["tokens"], train=False)

    def pair_loss(self, image, text, scale, bias):
        """The loss on (N, D) image and text embeddings, ring-shaped if ``method.ring``."""
        siglip = self.config.loss == "siglip"
        block = self.config.block_size or None
        if not self.config.ring:
            if siglip:
                return losses.siglip(image, text, scale, bias, block_size=block)
            return losses.clip(image, text, scale, block_size=block)
        mesh = self.mesh
        axis = mesh.axis_names[0]
        if siglip:
            ring = lambda i, t, s, b: losses.siglip_ring(i, t, s, b, axis_name=axis)
            return jax.shard_map(ring, mesh=mesh, in_specs=(P(axis), P(axis), P(), P()),
                                 out_specs=P())(image, text, scale, bias)
        ring = lambda i, t, s: losses.clip_ring(i, t, s, axis_name=axis)
        return jax.shard_map(ring, mesh=mesh, in_specs=(P(axis), P(axis), P()),
                             out_specs=P())(image, text, scale)

    def towers(self, params, batch_stats, inputs, rng):
        """Both towers in training mode: ({"image", "text"} embeddings, new batch_stats)."""
        out, updates = self.network.apply({"params": params, "batch_stats": batch_stats},
                                          inputs["images"], inputs["tokens"], train=True,
                                          mutable=["batch_stats"], rngs={"dropout": rng})
        return out, updates["batch_stats"]

    def loss(self, params, batch_stats, extra, batch, rng, step):
        variables = {"params": params, "batch_stats": batch_stats}
        inputs = {"images": batch["views"][0], "tokens": batch["tokens"]}
        if self.grad_cache_chunk:
            towers = grad_cache.cached_embed(self.towers, self.grad_cache_chunk, has_state=True)
            out, new_batch_stats = towers(params, batch_stats, inputs, rng)
        else:
            out, new_batch_stats = self.towers(params, batch_stats, inputs, rng)
        scale, bias = self.network.apply(variables, method=TwoTowers.scale_and_bias)
        loss = self.pair_loss(out["image"], out["text"], scale, bias)
        metrics = {"logit_scale": scale}
        if not (self.config.ring or self.config.block_size):  # they avoid the N x N matrix
            image, text = l2_normalize(out["image"]), l2_normalize(out["text"])
            hits = jnp.argmax(image @ text.T, axis=1) == jnp.arange(image.shape[0])
            metrics["batch_i2t_top1"] = jnp.mean(hits)
        if bias is not None:
            metrics["logit_bias"] = bias
        return loss, LossAux(metrics=metrics, batch_stats=new_batch_stats)

    def constrain_params(self, params):
        if self.config.loss == "siglip":
            return params
        return dict(params, log_scale=jnp.minimum(params["log_scale"], math.log(100.0)))

    def embed_images(self, variables, images):
        return l2_normalize(self.network.apply(variables, images, method=TwoTowers.embed_images))

    def embed_texts(self, variables, tokens):
        return l2_normalize(self.network.apply(variables, tokens, method=TwoTowers.embed_texts))

    def image_features(self, variables, images):
        return self.network.apply(variables, images, method=TwoTowers.features)
