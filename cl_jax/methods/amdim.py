"""Augmented Multiscale Deep InfoMax (Bachman, Hjelm & Buchwalter 2019, "Learning
Representations by Maximizing Mutual Information Across Views", NeurIPS, arXiv:1906.00910;
reference code Philip-Bachman/amdim-public, ``model.py``, ``costs.py``,
``task_self_supervised.py``, ``train.py``).

Two independently augmented views ``x1``, ``x2`` of each image, each through the encoder in a
forward pass of its own (BatchNorm statistics per view, as the reference's
``self.encoder(x1)``, ``self.encoder(x2)``). The encoder gives features at three scales:

- "1": the global vector, here the encoder's pooled features (the reference's 1x1 map, the
  output of its last ``ConvResNxN`` to ``n_rkhs`` channels and a BatchNorm);
- "5" and "7": two local maps, every location a local feature; the stages
  ``method.scale5_stage`` and ``method.scale7_stage`` of the encoder (negative counts from the
  last). The reference takes the 5x5 and 7x7 maps of its 128px encoder; on the 8x8 digits the
  ConvNet (32, 64, 128) has no such maps, so "5" is its last, 2x2 map (stage -1) and "7" its
  4x4 map (stage -2), and "1" the last map, mean-pooled.

Each scale has its own embedding head to ``n_rkhs`` dimensions (the reference's "fake RKHS"
embeddings, ``f_rkhs``): :class:`RKHSHead`, the reference's ``FakeRKHSConvNet`` per location
(a 1x1 conv is a Dense on the last axis): ``BN(Dense(ReLU(Dense(x))) + shortcut(x))``, the
first Dense with PyTorch's default (kaiming-uniform, a=sqrt 5) initialisation, the second
zero-initialised (the reference's fixup-style ``init_weights``), no hidden BatchNorm (its
default ``use_bn=0``), a shortcut with bias initialised near the identity (ones on the
diagonal, U(-0.01, 0.01) elsewhere) when ``n_rkhs`` >= the input width (its bias starts at
0; PyTorch's is uniform), BatchNorm (affine, PyTorch's momentum 0.1 / epsilon 1e-5) on the
output. The reference's "1" scale has no head
(``NopNet``: its encoder already ends in ``n_rkhs`` channels and a BatchNorm); here the
pooled features go through the same ``RKHSHead`` as the local maps.

The loss (the reference's ``LossMultiNCE`` / ``NCE_MI_MULTI``): for a source vector ``s`` of one
view and the target map ``t`` of the other, the scores ``T[c, m, b] = t[c, m] . s[b] /
sqrt(n_rkhs)``; each target location ``m`` of image ``b`` must pick ``s[b]``, against every
location of every other image of the batch (the whole global batch), InfoNCE
(:func:`cl_jax.losses.dim_local_global`, ``measure="nce"``), with the reference's stabilisers:
``score_penalty * mean(T ** 2)`` over all the (location, source) pairs before clipping (its
``lgt_reg``, 0.05) and the soft clip ``tclip * tanh(T / tclip)`` (20; 0 turns it off). The
pairings, each in both directions (x1 source -> x2 target and x2 -> x1):

- ``1t5``: the global vector against the "5" map of the other view;
- ``1t7``: the global vector against the "7" map;
- ``5t5``: one location of the source view's "5" map, drawn uniformly per image and per
  direction (the reference's ``_sample_src_ftr``), against all "5" locations of the other view.

As the reference: each pairing's NCE is the mean of its two directions, its regulariser
``0.5 * (sum of the six directions' lgt_reg)``, and the loss the sum of the three pairings and
the regulariser (``task_self_supervised.py``: ``loss_g2l = 1t5 + 1t7 + 5t5; loss_inf =
loss_g2l + lgt_reg``). Here each pairing can be weighted (``weight_1t5``, ``weight_1t7``,
``weight_5t5``; all 1, the reference's), a weight scaling its NCE and its share of the
regulariser; a zero weight drops the pairing. Logged: ``nce_1t5``, ``nce_1t7``, ``nce_5t5``
(each the mean of its directions, without the regulariser) and ``score_penalty`` (the
regulariser term as added, the reference's ``lgt_reg``).

The online probe is a linear classifier on the stop-gradient pooled features of both views
(the reference trains its online MLP and linear classifiers on ``rkhs_1`` of both views, with
their own tanh clip; here the zoo's one linear probe). The representation the evaluators see
is the encoder's pooled features (the shared encoder's), not the reference's ``rkhs_1`` (here
the "1" head's output).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.methods.base import LossAux, Method, probe_logits_of
from cl_jax.methods.dim import near_identity

PAIRINGS = ("1t5", "1t7", "5t5")
# PyTorch's default Conv2d / Linear initialisation, kaiming_uniform(a=sqrt(5)):
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def batch_norm(train, name=None):
    """PyTorch's BatchNorm defaults (momentum 0.1, epsilon 1e-5), affine."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class RKHSHead(nn.Module):
    """amdim-public ``FakeRKHSConvNet`` (``use_bn=False``) on the last axis:
    ``BN(Dense(ReLU(Dense(x))) + shortcut(x))``, the second Dense zero-initialised, the
    shortcut near the identity when ``units`` >= the input width."""

    units: int

    @nn.compact
    def __call__(self, x, train=True):
        h = nn.Dense(self.units, use_bias=False, kernel_init=torch_default, name="hidden")(x)
        h = nn.Dense(self.units, use_bias=False, kernel_init=nn.initializers.zeros,
                     name="out")(nn.relu(h))
        shortcut_init = near_identity if self.units >= x.shape[-1] else torch_default
        shortcut = nn.Dense(self.units, kernel_init=shortcut_init, name="shortcut")(x)
        return batch_norm(train, name="norm")(h + shortcut)


class AMDIMNetwork(nn.Module):
    encoder: nn.Module
    n_rkhs: int = 1024
    scale5_stage: int = -1
    scale7_stage: int = -2
    num_classes: int = 0

    @nn.compact
    def __call__(self, x, train: bool = True):
        features, maps = self.encoder(x, train, return_maps=True)
        b = features.shape[0]
        out = {"features": features,
               "r1": RKHSHead(self.n_rkhs, name="rkhs_1")(features, train)}
        for scale, stage in (("5", self.scale5_stage), ("7", self.scale7_stage)):
            r = RKHSHead(self.n_rkhs, name=f"rkhs_{scale}")(maps[stage].astype(jnp.float32),
                                                            train)
            out[f"r{scale}"] = r.reshape(b, -1, self.n_rkhs)  # (B, H W, n_rkhs)
        if self.num_classes:
            out["probe_logits"] = nn.Dense(self.num_classes, name="probe")(
                jax.lax.stop_gradient(features))
        return out

    def features(self, x, train: bool = False):
        return self.encoder(x, train)


def encoder_stages(config):
    """How many feature maps the encoder returns, or None if it returns none."""
    if config.model.encoder == "convnet":
        return len(config.model.widths)
    if config.model.encoder.startswith("resnet"):
        return 4
    return None


def source_locations(rng, batch, locations):
    """The location of the "5" map each image's 5->5 source is read from, per direction
    (x1 -> x2, x2 -> x1): (2, batch) ints uniform in [0, locations)."""
    return jax.random.randint(rng, (2, batch), 0, locations)


def nce_term(source, target, n_rkhs, tclip, score_penalty):
    """One direction of one pairing: (NCE + regulariser, regulariser) of the sources (B, D)
    against the target maps (B, M, D), the reference's ``NCE_MI_MULTI._loss_g2l``."""
    source = source / math.sqrt(n_rkhs)
    term = losses.dim_local_global(target, source, measure="nce", tanh_clip=tclip or None,
                                   score_penalty=score_penalty)
    scores = jnp.einsum("bmd,cd->bmc", target, jax.lax.stop_gradient(source))
    penalty = score_penalty * jnp.mean(jax.lax.stop_gradient(scores) ** 2)
    return term, penalty


class AMDIM(Method):
    name = "amdim"
    min_views = 2
    view_grouping = "per_view"  # amdim-public model.py: self.encoder(x1), self.encoder(x2)

    @classmethod
    def validate(cls, config):
        m = config.method
        stages = encoder_stages(config)
        if stages is None:
            raise ConfigError(f"amdim needs an encoder that returns its feature maps (convnet, "
                              f"resnet*), not {config.model.encoder!r}.")
        if stages < 2:
            raise ConfigError(f"amdim needs two different stage maps for its 5 and 7 scales; "
                              f"the encoder has {stages} stage: give the ConvNet two or more "
                              "widths (--config.model.widths).")
        chosen = {}
        for field in ("scale5_stage", "scale7_stage"):
            stage = m[field]
            if not -stages <= stage < stages:
                raise ConfigError(f"method.{field}={stage} is not one of the encoder's {stages} "
                                  f"stages (0 to {stages - 1}, or -{stages} to -1).")
            chosen[field] = stage % stages
        if chosen["scale5_stage"] == chosen["scale7_stage"]:
            raise ConfigError(f"amdim needs two different stage maps for its 5 and 7 scales; "
                              f"method.scale5_stage={m.scale5_stage} and "
                              f"scale7_stage={m.scale7_stage} are the same stage: set them to "
                              "two different stages (the defaults are -1 and -2).")
        weights = [m[f"weight_{p}"] for p in PAIRINGS]
        if min(weights) < 0 or not max(weights) > 0:
            raise ConfigError(f"method.weight_1t5, weight_1t7, weight_5t5 are {tuple(weights)}; "
                              "they must be >= 0 with one > 0 (the reference's are all 1).")
        if m.tclip < 0:
            raise ConfigError(f"method.tclip={m.tclip} must be >= 0 (20 is the reference's; "
                              "0 turns the tanh clip off).")
        if m.score_penalty < 0:
            raise ConfigError(f"method.score_penalty={m.score_penalty} must be >= 0 (0.05 is "
                              "the reference's).")
        if int(m.n_rkhs) != m.n_rkhs or m.n_rkhs < 1:
            raise ConfigError(f"method.n_rkhs={m.n_rkhs} must be a positive integer (the "
                              "embedding width; the reference's CIFAR default is 1024).")
        if config.augment.num_global_views < 2:
            raise ConfigError(f"amdim contrasts two augmented views of each image; set "
                              f"--config.augment.num_global_views=2 (it is "
                              f"{config.augment.num_global_views}).")

    def build_network(self, encoder, num_classes):
        c = self.config
        return AMDIMNetwork(encoder=encoder, n_rkhs=int(c.n_rkhs), scale5_stage=c.scale5_stage,
                            scale7_stage=c.scale7_stage, num_classes=num_classes)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        outputs, batch_stats = self.forward(params, batch_stats, batch["views"][:2])
        b, m5 = outputs[0]["r5"].shape[:2]
        total, metrics = self.objective([{k: o[k] for k in ("r1", "r5", "r7")} for o in outputs],
                                        source_locations(rng, b, m5))
        return total, LossAux(metrics=metrics, batch_stats=batch_stats,
                              probe_logits=probe_logits_of(outputs, 2), probe_views=2)

    def objective(self, embeddings, where):
        """(loss, metrics) of the two views' embeddings (``r1`` (B, D), ``r5`` (B, M5, D),
        ``r7`` (B, M7, D) each), the 5->5 sources read at ``where`` (2, B) (see
        ``source_locations``)."""
        c = self.config
        rows = jnp.arange(embeddings[0]["r1"].shape[0])
        sources = {"1": [e["r1"] for e in embeddings],
                   "5": [e["r5"][rows, where[v]] for v, e in enumerate(embeddings)]}
        targets = {"5": [e["r5"] for e in embeddings], "7": [e["r7"] for e in embeddings]}
        metrics, total, penalty = {}, 0.0, 0.0
        for pairing in PAIRINGS:
            weight = c[f"weight_{pairing}"]
            if not weight:
                continue
            src, trg = pairing.split("t")
            # x1 source -> x2 target, x2 -> x1.
            terms = [nce_term(sources[src][v], targets[trg][1 - v], c.n_rkhs, c.tclip,
                              c.score_penalty) for v in range(2)]
            both = 0.5 * (terms[0][0] + terms[1][0])
            regulariser = terms[0][1] + terms[1][1]
            metrics[f"nce_{pairing}"] = both - 0.5 * regulariser
            penalty = penalty + weight * regulariser
            total = total + weight * both
        metrics["score_penalty"] = 0.5 * penalty
        return total, metrics
