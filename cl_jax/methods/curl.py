"""CURL (Srinivas, Laskin & Abbeel 2020, "CURL: Contrastive Unsupervised Representations for
Reinforcement Learning", ICML, arXiv:2004.04136; reference code MishaLaskin/curl,
``curl_sac.py``, ``encoder.py``), the representation part.

An observation is a stack of consecutive frames on the channel axis (``data.frame_stack``,
the paper's 3); its two views are two random crops of the whole stack, so every frame of a
stack is cut by the same window (the reference's ``random_crop``, 84 of 100 pixels; the
views' ``crop_scale`` and ``crop_ratio`` fix the window's size, a crop of the view's size
leaves no resize). No colour augmentation (the loop refuses one on frame stacks).

Networks, as the reference's pixel encoder: the conv encoder's last feature map flattened
(no pooling: a position on the canvas stays a position in the features), a linear layer to
``feature_dim`` (50) and LayerNorm: ``z``. The reference's critic encoder has
``output_logits=True`` (no tanh after the LayerNorm), kept here. The key encoder is the
EMA of the query encoder and its head, ``key <- m key + (1 - m) query`` after every step with
``m = momentum``: the reference's ``encoder_tau`` 0.05 is ``m = 0.95`` (it updates every
``critic_target_update_freq`` = 2 steps; here every step).

Loss: :func:`cl_jax.losses.bilinear_info_nce` of the query ``z_q`` of view 1 against the keys
``sg(z_k)`` of view 2, ``W`` (``feature_dim`` x ``feature_dim``) learned, initialised
``U[0, 1)`` as the reference's ``torch.rand``. Only the anchor view is a query (the
reference's asymmetric ``update_cpc``).

The representation the evaluators see is ``z``, what CURL's actor and critic read. The RL
agent itself (SAC with CURL as an auxiliary loss, or PPO) is out of scope: this module
learns the encoder from frames alone.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.methods._target import init_target, update_target
from cl_jax.methods.base import LossAux, Method

TARGET_MODULES = ("encoder", "head")


class PixelHead(nn.Module):
    """The reference's encoder top: the flattened map, Linear(feature_dim), LayerNorm."""

    feature_dim: int

    @nn.compact
    def __call__(self, feature_map):
        flat = feature_map.reshape(feature_map.shape[0], -1)
        return nn.LayerNorm()(nn.Dense(self.feature_dim)(flat))


class CURLNetwork(nn.Module):
    encoder: nn.Module
    feature_dim: int = 50
    num_classes: int = 0
    bilinear: bool = True  # the query network holds W; the key network does not

    def setup(self):
        self.head = PixelHead(self.feature_dim)
        if self.bilinear:
            self.w = self.param("w", nn.initializers.uniform(1.0),
                                (self.feature_dim, self.feature_dim))
        if self.num_classes:
            self.probe = nn.Dense(self.num_classes)

    def __call__(self, x, train: bool = True):
        z = self.features(x, train)
        out = {"features": z}
        if self.num_classes:
            out["probe_logits"] = self.probe(jax.lax.stop_gradient(z))
        return out

    def features(self, x, train: bool = False):
        _, maps = self.encoder(x, train, return_maps=True)
        return self.head(maps[-1])


class CURL(Method):
    name = "curl"

    @classmethod
    def validate(cls, config):
        m = config.method
        if not 0 <= m.momentum < 1:
            raise ConfigError(f"method.momentum={m.momentum} must lie in [0, 1) (the reference's "
                              "encoder_tau 0.05 is momentum 0.95).")
        if m.feature_dim < 1:
            raise ConfigError(f"method.feature_dim={m.feature_dim} must be >= 1 (the "
                              "reference's 50).")
        if config.model.encoder != "convnet" and not config.model.encoder.startswith("resnet"):
            raise ConfigError(f"curl flattens its encoder's last feature map; use an encoder "
                              f"that returns its maps (convnet, resnet*), not "
                              f"{config.model.encoder!r}.")

    def build_network(self, encoder, num_classes):
        return CURLNetwork(encoder=encoder, feature_dim=self.config.feature_dim,
                           num_classes=num_classes)

    def build_target_network(self, encoder):
        return CURLNetwork(encoder=encoder, feature_dim=self.config.feature_dim,
                           bilinear=False)

    def init_extra(self, params, batch_stats, rng):
        return init_target(params, batch_stats, TARGET_MODULES)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        anchors, positives = batch["views"][:2]
        outputs, batch_stats = self.forward(params, batch_stats, [anchors])
        (keys,), target_stats = self.forward_target(
            extra["target_params"], extra["target_batch_stats"], [positives])
        z_q, z_k = outputs[0]["features"], jax.lax.stop_gradient(keys["features"])
        loss = losses.bilinear_info_nce(z_q, z_k, params["w"])
        logits = z_q @ params["w"] @ z_k.T
        accuracy = jnp.mean(jnp.argmax(logits, axis=1) == jnp.arange(logits.shape[0]))
        return loss, LossAux(
            metrics={"contrastive_accuracy": accuracy}, batch_stats=batch_stats,
            probe_logits=outputs[0].get("probe_logits"), probe_views=1,
            extra={"target_batch_stats": target_stats})

    def update_extra(self, extra, params, aux, step):
        return {"target_params": update_target(extra["target_params"], params,
                                               self.config.momentum),
                "target_batch_stats": aux.extra["target_batch_stats"]}
