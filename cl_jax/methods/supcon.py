"""Supervised contrastive learning, SupCon (Khosla, Teterwak, Wang, Sarna, Tian, Isola,
Maschinot, Liu & Krishnan 2020, "Supervised Contrastive Learning", arXiv:2004.11362).

Encoder + projector on the views of a labelled batch; every view is an anchor whose
positives are all the other views with its label (eq. 2, ``L_out``):
``l_i = -(1/|P(i)|) sum_{p in P(i)} log( exp(z_i.z_p/T) / sum_{a != i} exp(z_i.z_a/T) )``
on L2-normalised projections, computed by :func:`cl_jax.losses.supcon` on the ``(N, V, D)``
projections of the V views over the global batch. ``loss_scale`` multiplies the loss
(1 by default; ``T / 0.07`` reproduces HobbitLong/SupContrast's ``temperature /
base_temperature`` factor, see ``configs/supcon.py``). An example whose label is unknown
(``label < 0``) is its own class, so its only positives are its other views (SimCLR).

This is the paper's two-stage recipe: pre-train encoder + projector with labels, then train
a linear classifier on the frozen encoder features, which is this library's end-of-run
linear evaluation (``linear_top1``). The online probe only monitors training.
``needs_labels = True``: the loop refuses a training split without labels. The views share
one forward pass (``view_grouping = "per_resolution"``), as SupContrast concatenates them.

Defaults from the paper (section 3.1 and 4.5): projector with one hidden layer of 2048 and a
128-d output, temperature 0.1. The projector has no BatchNorm (``MLP(...,
use_batch_norm=False)``; ``proj_batch_norm`` switches it on), as in HobbitLong/SupContrast
and solo-learn ``supcon.py``.

Mixup and CutMix (``method.mix="mixup"`` / ``"cutmix"``, ``mix_alpha``; off by default, as
in the paper, whose mixup and CutMix runs are cross-entropy baselines): every view of the
batch is mixed with the same partner and the same ``lam`` (one ``lam ~ Beta(alpha, alpha)``
per batch, as Zhang et al. and Yun et al.; one box for CutMix), and the loss is SupCon with
the mixed targets ``lam y_i + (1 - lam) y_perm(i)`` (``losses.supcon(..., targets=...)``:
positives weighted by the chance two views share a class). The online probe learns the same
mixed targets.
"""

import jax
import jax.numpy as jnp

from cl_jax import losses, mixing
from cl_jax.errors import ConfigError
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.models import MLP


def classes_with_unknown_as_singletons(labels):
    """Labels with every unknown label (< 0) replaced by a class of its own (-1 - index)."""
    return jnp.where(labels < 0, -1 - jnp.arange(labels.shape[0]), labels)


class SupCon(Method):
    name = "supcon"
    needs_labels = True
    inputs = ("views", "label")
    view_grouping = "per_resolution"

    @classmethod
    def validate(cls, config):
        super().validate(config)
        mix = config.method.get("mix", "none")
        if mix not in mixing.KINDS:
            raise ConfigError(f"method.mix is {mix!r}; set --config.method.mix to one of "
                              f"{', '.join(mixing.KINDS)}.")

    def mix(self, rng, views, classes):
        """The views mixed with one partner and ``lam`` for all, and the mixed targets over
        the batch's distinct classes; (views, None, None) when ``method.mix`` is off."""
        c = self.config
        kind = c.get("mix", "none")
        if kind == "none":
            return views, None, None
        # One key for every view: one partner, one lam, one box.
        mixed = [mixing.mix_batch(kind, rng, v, c.mix_alpha) for v in views]
        _, perm, lam = mixed[0]
        n = classes.shape[0]
        _, ids = jnp.unique(classes, size=n, return_inverse=True)
        targets = mixing.mix_labels(jax.nn.one_hot(ids.reshape(n), n), perm, lam)
        return tuple(m[0] for m in mixed), targets, (perm, lam)

    def build_network(self, encoder, num_classes):
        c = self.config
        projector = MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim,
                        use_batch_norm=c.proj_batch_norm)
        return Network(encoder=encoder, projector=projector, num_classes=num_classes)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        classes = classes_with_unknown_as_singletons(batch["label"])
        views, targets, probe_mix = self.mix(rng, batch["views"], classes)
        outputs, batch_stats = self.forward(params, batch_stats, views)
        features = jnp.stack([o["projection"] for o in outputs], axis=1)
        loss = self.config.loss_scale * losses.supcon(
            features, None if targets is not None else classes,
            temperature=self.config.temperature, targets=targets)
        metrics = {} if probe_mix is None else {"lam": jnp.mean(probe_mix[1])}
        return loss, LossAux(metrics=metrics, batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 2), probe_views=2,
                             probe_mix=probe_mix)
