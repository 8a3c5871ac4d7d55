"""Deep InfoMax (Hjelm, Fedorov, Lavoie-Marchildon, Grewal, Bachman, Trischler & Bengio 2019,
"Learning deep representations by mutual information estimation and maximization", ICLR,
arXiv:1808.06670; reference code rdevon/DIM, ``cortex_DIM/models/dim.py``,
``prior_matching.py``, ``nn_modules/mi_networks.py``).

One view per image (the reference trains CIFAR without augmentation). The encoder returns its
stage feature maps; the map of stage ``local_stage`` holds the local features ``C_(i)``, and a
head on the pooled features gives the global feature ``Y`` (``global_dim`` = 64, the
reference's last linear layer after an FC 1024). The loss is
``alpha * global MI + beta * local MI + gamma * prior matching``:

- Local MI (DIM(L)), the reference's "encode-and-dot-product" critic: the local map and
  ``Y`` each go through an ``MIConvNet`` to ``mi_units`` (2048) — 1x1 conv, BatchNorm, ReLU,
  1x1 conv, plus a linear shortcut initialised near the identity, then LayerNorm
  (``MI1x1ConvNet``) — and the scores are the dot products of every location of every image
  with every image's ``Y``: :func:`cl_jax.losses.dim_local_global` with ``measure``
  (``jsd``, the reference's default; ``dv``; ``nce``).
- Global MI (DIM(G)): the whole map, flattened, through an MLP (FC 1024, BatchNorm, ReLU,
  linear to ``mi_units``) against ``Y`` through a linear layer to ``mi_units``, the same
  estimator with one location (the reference's ``GlobalDIM`` is also a dot-product critic; it
  runs a conv stack on the map first, which is left out here).
- Prior matching: ``sigmoid(Y)`` against samples of ``U[0, 1]^global_dim`` through a
  discriminator (1000-200-1, ReLU, no BatchNorm), the standard GAN game: the discriminator
  minimises ``softplus(-D(prior)) + softplus(D(sigmoid(Y)))`` (on a stop-gradient of ``Y``),
  the encoder ``gamma * softplus(-D(sigmoid(Y)))`` (non-saturating, through a stop-gradient of
  the discriminator's parameters), so one optimiser trains both. The reference's gradient
  penalty on the discriminator is not implemented.

Weights: DIM(L) is ``alpha=0, beta=1, gamma=0.1`` (the reference README's prior example; its
CIFAR command trains local MI alone); DIM(G) is ``alpha=1, beta=0, gamma=1`` (the paper's
section 4 as cited by later work; not checked against the paper's text here).
The representation the evaluators see is the encoder's pooled features (the reference also
reports classifiers on its conv map, its FC 1024 and ``Y``).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.losses.mutual_information import MEASURES
from cl_jax.methods.base import LossAux, Method, probe_logits_of
from cl_jax.models import MLP


def near_identity(key, shape, dtype=jnp.float32):
    """U(-0.01, 0.01) with ones on the diagonal (the reference's shortcut initialisation)."""
    kernel = jax.random.uniform(key, shape, dtype, -0.01, 0.01)
    n = min(shape)
    return kernel.at[jnp.arange(n), jnp.arange(n)].set(1.0)


class MIConvNet(nn.Module):
    """rdevon/DIM ``MI1x1ConvNet``: per location (a 1x1 conv is a Dense on the last axis),
    ``LayerNorm(Dense(ReLU(BN(Dense(x)))) + shortcut(x))``."""

    units: int

    @nn.compact
    def __call__(self, x, train=True):
        main = MLP(hidden_dims=(self.units,), output_dim=self.units)(x, train)
        shortcut = nn.Dense(self.units, use_bias=False, kernel_init=near_identity)(x)
        return nn.LayerNorm()(main + shortcut)


class Discriminator(nn.Module):
    """The prior-matching discriminator: 1000-200-1 with ReLU."""

    @nn.compact
    def __call__(self, y):
        for width in (1000, 200):
            y = nn.relu(nn.Dense(width)(y))
        return nn.Dense(1)(y)[..., 0]


class DIMNetwork(nn.Module):
    encoder: nn.Module
    local_stage: int = 1
    global_hidden_dims: tuple = (1024,)
    global_dim: int = 64
    mi_units: int = 2048
    use_global: bool = False
    use_prior: bool = False
    num_classes: int = 0

    @nn.compact
    def __call__(self, x, train: bool = True):
        features, maps = self.encoder(x, train, return_maps=True)
        local_map = maps[self.local_stage]
        y = MLP(hidden_dims=self.global_hidden_dims, output_dim=self.global_dim,
                name="global_head")(features, train)
        b = local_map.shape[0]
        out = {"features": features, "y": y,
               "local": MIConvNet(self.mi_units, name="local_mi")(local_map, train)
               .reshape(b, -1, self.mi_units),
               "local_global": MIConvNet(self.mi_units, name="global_mi")(y, train)}
        if self.use_global:
            out["map_code"] = MLP(hidden_dims=(1024,), output_dim=self.mi_units,
                                  name="map_mi")(local_map.reshape(b, -1), train)
            out["y_code"] = nn.Dense(self.mi_units, name="y_mi")(y)
        if self.use_prior:
            Discriminator(name="discriminator")(jax.nn.sigmoid(y))  # creates its parameters
        if self.num_classes:
            out["probe_logits"] = nn.Dense(self.num_classes, name="probe")(
                jax.lax.stop_gradient(features))
        return out

    def features(self, x, train: bool = False):
        return self.encoder(x, train)


class DIM(Method):
    name = "dim"
    min_views = 1

    @classmethod
    def validate(cls, config):
        m = config.method
        if m.measure not in MEASURES:
            raise ConfigError(f"method.measure is {m.measure!r}; set it to one of "
                              f"{', '.join(map(repr, MEASURES))}.")
        if min(m.alpha, m.beta, m.gamma) < 0 or not (m.alpha or m.beta):
            raise ConfigError("method.alpha (global MI), beta (local MI) and gamma (prior) "
                              "must be >= 0, and alpha or beta > 0; DIM(L) is alpha=0 beta=1 "
                              "gamma=0.1.")
        if config.model.encoder not in ("convnet",) and not config.model.encoder.startswith(
                "resnet"):
            raise ConfigError(f"dim needs an encoder that returns its feature maps (convnet, "
                              f"resnet*), not {config.model.encoder!r}.")
        stages = len(config.model.widths) if config.model.encoder == "convnet" else 4
        if not -stages <= m.local_stage < stages:
            raise ConfigError(f"method.local_stage={m.local_stage} is not one of the encoder's "
                              f"{stages} stages (0 to {stages - 1}).")

    def build_network(self, encoder, num_classes):
        c = self.config
        self.discriminator = Discriminator()
        return DIMNetwork(encoder=encoder, local_stage=c.local_stage,
                          global_hidden_dims=tuple(c.global_hidden_dims),
                          global_dim=c.global_dim, mi_units=c.mi_units,
                          use_global=c.alpha > 0, use_prior=c.gamma > 0,
                          num_classes=num_classes)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        c = self.config
        outputs, batch_stats = self.forward(params, batch_stats, batch["views"][:1])
        out = outputs[0]
        metrics = {}
        total = 0.0
        if c.beta:
            metrics["local_mi_loss"] = losses.dim_local_global(
                out["local"], out["local_global"], measure=c.measure)
            total = total + c.beta * metrics["local_mi_loss"]
        if c.alpha:
            metrics["global_mi_loss"] = losses.dim_local_global(
                out["map_code"][:, None], out["y_code"], measure=c.measure)
            total = total + c.alpha * metrics["global_mi_loss"]
        if c.gamma:
            prior_loss, disc_loss = self.prior_matching(params["discriminator"], out["y"], rng)
            metrics.update(prior_loss=prior_loss, discriminator_loss=disc_loss)
            total = total + c.gamma * prior_loss + disc_loss
        return total, LossAux(metrics=metrics, batch_stats=batch_stats,
                              probe_logits=probe_logits_of(outputs, 1), probe_views=1)

    def prior_matching(self, disc_params, y, rng):
        """(encoder's loss, discriminator's loss): the GAN game between ``sigmoid(y)`` and
        ``U[0, 1]`` samples, each side's gradient reaching only its own parameters."""
        apply = lambda p, v: self.discriminator.apply({"params": p}, v)
        encoded = jax.nn.sigmoid(y)
        prior = jax.random.uniform(rng, encoded.shape)
        fooled = jnp.mean(jax.nn.softplus(-apply(jax.lax.stop_gradient(disc_params), encoded)))
        real = apply(disc_params, prior)
        fake = apply(disc_params, jax.lax.stop_gradient(encoded))
        disc = jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))
        return fooled, disc
