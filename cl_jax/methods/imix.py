"""i-Mix (Lee et al. 2021, "i-Mix: A Domain-Agnostic Strategy for Contrastive Representation
Learning", ICLR 2021, arXiv:2010.08887) on SimCLR's N-pair setting.

Each example of the batch is its own virtual class. The first view of every example is mixed
with the first view of another, ``lam * x_i + (1 - lam) * x_perm(i)`` (``method.mix="mixup"``)
or a box of ``x_perm(i)`` pasted into ``x_i`` (``"cutmix"``, ``lam`` the part of ``x_i`` left);
the mixed views are the queries, the clean second views the keys, and the loss is
``losses.imix_info_nce``: cross-entropy against the mixed virtual labels, ``lam`` on key
``i`` and ``1 - lam`` on key ``perm(i)``.

As the reference (kibok90/imix ``builder.py``, ``method='npair'``, ``imix='imixup'`` /
``'icutmix'``, mixing at the input, ``mix_layers='0'``): mixed queries and clean keys go
through the encoder together (BatchNorm over both: ``view_grouping = "per_resolution"``);
mixup draws one ``lam ~ Beta(alpha, alpha)`` per example and keeps ``max(lam, 1 - lam)``,
cutmix one per batch (also ``max(lam, 1 - lam)``, then the part of the image the clipped box
leaves); the permutation is over the global batch (the reference permutes each GPU's
batch). ``method.sym`` adds the other direction (second views mixed, first views as keys;
off in the paper's CIFAR runs). The online probe sees the clean second views only.
"""

import jax

from cl_jax import losses, mixing
from cl_jax.errors import ConfigError
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.models import MLP

MIXES = ("mixup", "cutmix")


def mix_inputs(kind, alpha, key, images):
    """(mixed images, perm, lam) as kibok90/imix mixes its queries: ``kind`` "mixup" (one
    ``lam`` per example) or "cutmix" (one per batch), ``max(lam, 1 - lam)`` of each draw."""
    if kind == "mixup":
        return mixing.mixup(key, images, alpha, per_example=True, lam_at_least_half=True)
    return mixing.cutmix(key, images, alpha, lam_at_least_half=True)


def mix(config, key, images):
    """(mixed images, perm, lam) of ``config.mix`` with ``config.alpha``."""
    return mix_inputs(config.mix, config.alpha, key, images)


class IMix(Method):
    name = "imix"
    view_grouping = "per_resolution"

    @classmethod
    def validate(cls, config):
        super().validate(config)
        m = config.method
        if m.mix not in MIXES:
            raise ConfigError(f"method.mix is {m.mix!r}; set --config.method.mix to one of "
                              f"{', '.join(MIXES)}.")
        if m.alpha <= 0:
            raise ConfigError(f"method.alpha is {m.alpha}; i-Mix needs alpha > 0 (the paper: "
                              "1.0).")

    def build_network(self, encoder, num_classes):
        c = self.config
        projector = MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim,
                        output_norm=c.proj_output_norm)
        return Network(encoder=encoder, projector=projector, num_classes=num_classes)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        c = self.config
        v1, v2 = batch["views"][:2]
        directions = [(v1, v2)] + ([(v2, v1)] if c.sym else [])
        total, metrics, probe = 0.0, {}, None
        for d, (mixed_view, clean_view) in enumerate(directions):
            mixed, perm, lam = mix(c, jax.random.fold_in(rng, d), mixed_view)
            outputs, batch_stats = self.forward(params, batch_stats, (mixed, clean_view))
            total += losses.imix_info_nce(outputs[0]["projection"], outputs[1]["projection"],
                                          perm, lam, temperature=c.temperature)
            if d == 0:
                metrics["lam"] = lam.mean()
                probe = probe_logits_of(outputs[1:], 1)
        return total, LossAux(metrics=metrics, batch_stats=batch_stats, probe_logits=probe,
                              probe_views=1)
