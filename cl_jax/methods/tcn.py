"""Time-Contrastive Networks (Sermanet, Lynch, Chebotar, Hsu, Jang, Schaal & Levine 2018,
"Time-Contrastive Networks: Self-Supervised Learning from Video", ICRA, arXiv:1704.06888).

An example is a whole clip: ``cameras`` synchronised cameras of ``T`` frames each, stacked
camera-major on the channel axis (``cl_jax.data.moving_digits`` with ``frame_stack =
clip_length``); one random crop cuts every frame of it alike. Every frame is embedded on its
own: the encoder, a linear layer to ``embed_dim`` (the paper's 32) and L2 normalisation. The
triplets come from within a clip, never across clips:

- single-view TCN (``cameras`` 1, the paper's section III-B): the positives of an anchor frame
  are the frames at most ``pos_window`` steps away, its negatives the frames at least
  ``neg_gap`` steps away (the paper's "margin range"), so the embedding follows time and
  ignores what stays the same within a clip;
- multi-view TCN (``cameras`` 2, section III-A): the positive of an anchor is the frame of the
  same time seen by another camera, the negatives that camera's frames at least ``neg_gap``
  steps away, so the embedding holds what the cameras share at one time and not the viewpoint.

Loss: :func:`cl_jax.losses.triplet_margin` on those masks, ``margin`` and ``mining``
(``semihard``: the per-(anchor, positive) nearest negative farther than the positive, as the
TF metric-learning triplet loss; ``hard``, ``all``), averaged over the clips. The paper's
margin was not checked; 0.2 here is FaceNet's. The paper's n-pairs variant is not built.

The representation the evaluators see is the concatenation of the encoder features of every
frame of the example (``cameras * T`` times the encoder's width), so that both where the
digit is and how it moves can be read from it.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.losses._utils import l2_normalize
from cl_jax.methods.base import LossAux, Method

MINING = ("semihard", "hard", "all")


def frames_of(x, cameras):
    """(B, H, W, cameras * T) -> (B * cameras * T, H, W, 1), camera-major then time."""
    b, h, w, c = x.shape
    return jnp.moveaxis(x, -1, 1).reshape(b * c, h, w, 1), c // cameras


class TCNNetwork(nn.Module):
    encoder: nn.Module
    cameras: int = 1
    embed_dim: int = 32
    num_classes: int = 0

    def setup(self):
        self.embed = nn.Dense(self.embed_dim)
        if self.num_classes:
            self.probe = nn.Dense(self.num_classes)

    def __call__(self, x, train: bool = True):
        b = x.shape[0]
        frames, steps = frames_of(x, self.cameras)
        per_frame = self.encoder(frames, train)
        out = {"features": per_frame.reshape(b, -1),
               "embeddings": l2_normalize(self.embed(per_frame)).reshape(
                   b, self.cameras, steps, self.embed_dim)}
        if self.num_classes:
            out["probe_logits"] = self.probe(jax.lax.stop_gradient(out["features"]))
        return out

    def features(self, x, train: bool = False):
        frames, _ = frames_of(x, self.cameras)
        return self.encoder(frames, train).reshape(x.shape[0], -1)


def triplet_masks(cameras, steps, pos_window, neg_gap):
    """(positives, negatives) ``[a, x]`` over the ``cameras * steps`` frames of one clip
    (camera-major): see the module docstring."""
    camera = jnp.repeat(jnp.arange(cameras), steps)
    time = jnp.tile(jnp.arange(steps), cameras)
    gap = jnp.abs(time[:, None] - time[None, :])
    other_camera = camera[:, None] != camera[None, :]
    if cameras == 1:
        return (gap >= 1) & (gap <= pos_window), gap >= neg_gap
    return other_camera & (gap == 0), other_camera & (gap >= neg_gap)


class TCN(Method):
    name = "tcn"
    min_views = 1

    @classmethod
    def validate(cls, config):
        m, channels = config.method, config.data.channels
        if m.cameras < 1 or channels % m.cameras:
            raise ConfigError(f"tcn's examples are method.cameras={m.cameras} camera(s) of "
                              f"frames on the channel axis, but the {channels} channels do not "
                              "divide into them; set --config.method.cameras to the data's "
                              "(data.cameras of the moving digits).")
        steps = channels // m.cameras
        if m.mining not in MINING:
            raise ConfigError(f"method.mining is {m.mining!r}; set it to one of "
                              f"{', '.join(MINING)}.")
        if m.cameras == 1 and not 1 <= m.pos_window < m.neg_gap < steps:
            raise ConfigError(f"single-view tcn needs 1 <= method.pos_window ({m.pos_window}) "
                              f"< method.neg_gap ({m.neg_gap}) < the frames of a clip "
                              f"({steps}); lower them or train on longer clips.")
        if m.cameras > 1 and not 1 <= m.neg_gap < steps:
            raise ConfigError(f"multi-view tcn needs 1 <= method.neg_gap ({m.neg_gap}) < the "
                              f"frames of a clip ({steps}).")

    def build_network(self, encoder, num_classes):
        c = self.config
        return TCNNetwork(encoder=encoder, cameras=c.cameras, embed_dim=c.embed_dim,
                          num_classes=num_classes)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        c = self.config
        outputs, batch_stats = self.forward(params, batch_stats, batch["views"][:1])
        embeddings = outputs[0]["embeddings"]
        b, cameras, steps, d = embeddings.shape
        positives, negatives = triplet_masks(cameras, steps, c.pos_window, c.neg_gap)
        per_clip = jax.vmap(lambda e: losses.triplet_margin(
            e, margin=c.margin, mining=c.mining, positives=positives, negatives=negatives))
        loss = jnp.mean(per_clip(embeddings.reshape(b, cameras * steps, d)))
        return loss, LossAux(metrics={}, batch_stats=batch_stats,
                             probe_logits=outputs[0].get("probe_logits"), probe_views=1)
