"""Contrastive Multiview Coding (Tian, Krishnan & Isola 2020, "Contrastive Multiview Coding",
ECCV, arXiv:1906.05849; reference code HobbitLong/CMC ``train_CMC.py``, ``NCE/``).

One augmented image is split into views, each seen by an encoder of its own: the L channel
and the ab channels of the image in CIE L*a*b* (``data.color_space="lab"``,
``method.split="channels"``, ``channel_groups=((0,), (1, 2))``), as the paper's ImageNet and
STL-10 models. Each encoder is followed by a linear layer to ``proj_dim`` (128) and L2
normalisation, ``z_v``. The representation the evaluators see is the concatenation of the
encoders' pooled features (the paper's linear probes read both halves).

The loss sums, over the pairs of views of the graph (``graph="core"``: view 0 against each
other view, the paper's "core view"; ``"full"``: every pair, its "full graph"; the same for
two views), both directions of the pair, as ``train_CMC.py``'s ``l_loss + ab_loss``.
``objective`` picks the contrast of a direction ``(i -> j)``:

- ``"nce"``: a memory bank per view (``extra['banks']``, one row per training example,
  ``method.num_examples``), ``z_i`` scored against view ``j``'s bank: its own row is the
  positive, ``num_noise`` rows drawn uniformly the noise (one draw per batch and pair, shared
  by both directions, as ``NCEAverage``), ``exp(score / T) / Z`` with a constant ``Z``
  estimated on the first batch (per direction), binary NCE against ``P_n = 1 / N``
  (``_bank.noise_contrastive``, ``losses.nce``; the reference's ``NCECriterion``).
- ``"softmax"``: the same scores, cross-entropy with the own row as the target among the
  ``1 + num_noise`` (the reference's ``--softmax``, ``NCESoftmaxLoss``).
- ``"in_batch"``: no bank; InfoNCE of ``z_i`` against the batch's ``z_j``
  (``losses.info_nce``, temperature T).

After each step every view's bank rows move towards the batch's features,
``v <- normalize(m v + (1 - m) z)``, ``bank_momentum`` m = 0.5 (``NCEAverage``). The initial
banks are random unit vectors (the reference's are uniform in ``[-1/sqrt(d/3), 1/sqrt(d/3)]``
per coordinate). K = 16384 noise rows and T = 0.07 are the reference's ImageNet defaults; the
issue's CIFAR / STL-10 presets use K = 4096.

``split="rows"`` cuts the image into ``num_bands`` horizontal bands instead, band ``v`` for
encoder ``v``: not a view of the paper; the greyscale digits use it (top half against bottom
half) so that CMC runs offline on the embedded data.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.losses._utils import l2_normalize
from cl_jax.methods._bank import (
    bank_size,
    checked_index,
    momentum_rows,
    noise_contrastive,
    random_unit_vectors,
)
from cl_jax.methods.base import LossAux, Method, probe_logits_of
from cl_jax.models import MLP

SPLITS = ("channels", "rows")
OBJECTIVES = ("nce", "softmax", "in_batch")
GRAPHS = ("core", "full")


def split_views(images, split, channel_groups=(), num_bands=2):
    """The views of a batch of images (B, H, W, C): its channel groups, or ``num_bands``
    horizontal bands of equal height."""
    if split == "channels":
        return [images[..., list(group)] for group in channel_groups]
    height = images.shape[1] // num_bands
    return [images[:, v * height:(v + 1) * height] for v in range(num_bands)]


def view_pairs(num_views, graph):
    """The pairs of views contrasted: ``core`` (0 with every other) or ``full`` (all)."""
    if graph == "core":
        return [(0, j) for j in range(1, num_views)]
    return [(i, j) for i in range(num_views) for j in range(i + 1, num_views)]


class CMCNetwork(nn.Module):
    """One encoder and linear head per view; features: the encoders' outputs, concatenated."""

    encoders: tuple
    proj_dim: int
    split: str
    channel_groups: tuple = ()
    num_bands: int = 2
    num_classes: int = 0

    def setup(self):
        self.heads = [MLP(hidden_dims=(), output_dim=self.proj_dim) for _ in self.encoders]
        if self.num_classes:
            self.probe = nn.Dense(self.num_classes)

    def _encode(self, x, train):
        views = split_views(x, self.split, self.channel_groups, self.num_bands)
        return [encoder(view, train) for encoder, view in zip(self.encoders, views, strict=True)]

    def __call__(self, x, train: bool = True):
        encoded = self._encode(x, train)
        features = jnp.concatenate(encoded, axis=-1)
        out = {"features": features,
               "projections": [l2_normalize(head(f, train))
                               for head, f in zip(self.heads, encoded, strict=True)]}
        if self.num_classes:
            out["probe_logits"] = self.probe(jax.lax.stop_gradient(features))
        return out

    def features(self, x, train: bool = False):
        return jnp.concatenate(self._encode(x, train), axis=-1)


class CMC(Method):
    name = "cmc"
    min_views = 1
    inputs = ("views", "index")

    @classmethod
    def validate(cls, config):
        m, channels = config.method, config.data.channels
        for field, value, allowed in (("split", m.split, SPLITS),
                                      ("objective", m.objective, OBJECTIVES),
                                      ("graph", m.graph, GRAPHS)):
            if value not in allowed:
                raise ConfigError(f"method.{field} is {value!r}; set it to one of "
                                  f"{', '.join(map(repr, allowed))}.")
        if m.split == "channels":
            used = [c for group in m.channel_groups for c in group]
            if len(m.channel_groups) < 2 or not all(0 <= c < channels for c in used):
                raise ConfigError(
                    f"method.channel_groups={tuple(map(tuple, m.channel_groups))} must name "
                    f"two or more groups of the images' {channels} channels (e.g. ((0,), "
                    "(1, 2)) for L against ab); a greyscale source has one channel: use "
                    "--config.method.split=rows, or an RGB source with data.color_space=lab.")
        else:
            size = config.augment.view1.size
            if m.num_bands < 2 or size % m.num_bands:
                raise ConfigError(f"method.num_bands={m.num_bands} must be >= 2 and divide the "
                                  f"view's height ({size}).")
        if m.objective != "in_batch" and m.num_noise < 1:
            raise ConfigError(f"method.objective={m.objective!r} draws noise rows from the "
                              "memory banks: set --config.method.num_noise > 0 (or "
                              "objective='in_batch').")

    @property
    def num_views(self):
        c = self.config
        return len(c.channel_groups) if c.split == "channels" else c.num_bands

    def build_network(self, encoder, num_classes):
        c = self.config
        groups = tuple(tuple(g) for g in c.channel_groups)
        return CMCNetwork(encoders=tuple(encoder.clone() for _ in range(self.num_views)),
                          proj_dim=c.proj_dim, split=c.split, channel_groups=groups,
                          num_bands=c.num_bands, num_classes=num_classes)

    def init_extra(self, params, batch_stats, rng):
        c = self.config
        if c.objective == "in_batch":
            return {}
        keys = jax.random.split(rng, self.num_views)
        directions = 2 * len(view_pairs(self.num_views, c.graph))
        extra = {"banks": [random_unit_vectors(k, (bank_size(c), c.proj_dim)) for k in keys]}
        if c.objective == "nce":
            extra.update(log_z=jnp.zeros((directions,), jnp.float32), has_z=jnp.zeros((), bool))
        return extra

    def loss(self, params, batch_stats, extra, batch, rng, step):
        c = self.config
        outputs, batch_stats = self.forward(params, batch_stats, batch["views"][:1])
        z = outputs[0]["projections"]
        pairs = view_pairs(self.num_views, c.graph)
        total, metrics, aux_extra = 0.0, {}, {"features": [jax.lax.stop_gradient(v) for v in z]}
        if c.objective == "in_batch":
            for i, j in pairs:
                pair = (losses.info_nce(z[i], z[j], temperature=c.temperature)
                        + losses.info_nce(z[j], z[i], temperature=c.temperature))
                metrics[f"loss_{i}{j}"] = pair
                total = total + pair
        else:
            index = checked_index(self, batch["index"])
            banks, log_z = extra["banks"], []
            for p, (i, j) in enumerate(pairs):
                noise = jax.random.randint(jax.random.fold_in(rng, p),
                                           (index.shape[0], c.num_noise), 0, c.num_examples)
                pair = 0.0
                for d, (a, b) in enumerate(((i, j), (j, i))):
                    # z_a against view b's bank: its own row, then the noise rows.
                    positive = jnp.sum(z[a] * banks[b][index], axis=-1) / c.temperature
                    noise_logits = jnp.einsum("nd,nkd->nk", z[a], banks[b][noise]) / c.temperature
                    if c.objective == "nce":
                        direction, z_ab = noise_contrastive(
                            positive, noise_logits, extra["log_z"][2 * p + d], extra["has_z"],
                            c.num_examples)
                        log_z.append(z_ab)
                    else:
                        logits = jnp.concatenate([positive[:, None], noise_logits], axis=1)
                        direction = jnp.mean(jax.nn.logsumexp(logits, axis=1) - positive)
                    pair = pair + direction
                metrics[f"loss_{i}{j}"] = pair
                total = total + pair
            aux_extra["index"] = index
            if log_z:
                aux_extra["log_z"] = jnp.stack(log_z)
        return total, LossAux(metrics=metrics, batch_stats=batch_stats,
                              probe_logits=probe_logits_of(outputs, 1), probe_views=1,
                              extra=aux_extra)

    def update_extra(self, extra, params, aux, step):
        if self.config.objective == "in_batch":
            return extra
        banks = [momentum_rows(bank, aux.extra["index"], f, self.config.bank_momentum)
                 for bank, f in zip(extra["banks"], aux.extra["features"], strict=True)]
        new = dict(extra, banks=banks)
        if self.config.objective == "nce":
            new.update(log_z=aux.extra["log_z"], has_z=jnp.ones((), bool))
        return new
