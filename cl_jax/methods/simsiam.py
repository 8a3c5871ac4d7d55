"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning",
arXiv:2011.10566).

One network (encoder, projector ``f``, predictor ``h``) on both views; the predictor of each
view regresses the stopped projection of the other:
``loss = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2`` with ``D(p, z) = -mean_i cos(p_i, z_i)``
(paper eq. 4 and Algorithm 1; minimum -1). The halves are the paper's convention, as in
facebookresearch/simsiam ``main_simsiam.py`` and solo-learn ``simsiam.py``; BYOL's loss is the
sum of both directions instead. No negatives, no momentum encoder, no extra state: the
stop-gradient alone prevents collapse (paper section 4.1). Each view is its own BatchNorm
batch (``view_grouping = "per_view"``), as the official code forwards ``x1`` and ``x2``.

Heads (paper section 3, "Baseline settings"): projector ``MLP(hidden_dims=(2048, 2048),
output_dim=2048, output_norm=True)``, 3 layers with BatchNorm on every layer including the
output, ReLU on the hidden ones; predictor ``MLP(hidden_dims=(512,), output_dim=2048)``, a
bottleneck with BatchNorm on its hidden layer only. The output BatchNorm is affine here (the
paper's default, table 3c: 68.1%); the official code and solo-learn disable its scale and
offset, which the paper reports as comparable (68.2%).

The paper keeps the predictor's learning rate constant (table 1c: 68.1% vs 67.7% with the
cosine decay): ``optim.constant_lr_modules=("predictor",)``, set in every SimSiam preset.

The logged ``z_std`` is the paper's collapse monitor (figure 2, middle): the per-channel
standard deviation of ``z / |z|`` over the batch, averaged over channels; about
``1 / sqrt(d)`` when the outputs are spread over the sphere and 0 when they collapse.
"""

import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.models import MLP


def normalized_std(z):
    """Mean over channels of the batch standard deviation of the L2-normalised rows of z."""
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return jnp.mean(jnp.std(z, axis=0))


class SimSiam(Method):
    name = "simsiam"

    def build_network(self, encoder, num_classes):
        c = self.config
        projector = MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim,
                        output_norm=True)
        predictor = MLP(hidden_dims=tuple(c.pred_hidden_dims), output_dim=c.proj_dim)
        return Network(encoder=encoder, projector=projector, predictor=predictor,
                       num_classes=num_classes)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views = batch["views"]
        outputs, batch_stats = self.forward(params, batch_stats, views[:2])
        z1, z2 = (jax.lax.stop_gradient(o["projection"]) for o in outputs)
        p1, p2 = outputs[0]["prediction"], outputs[1]["prediction"]
        loss = 0.5 * losses.simsiam(p1, z2) + 0.5 * losses.simsiam(p2, z1)
        return loss, LossAux(metrics={"z_std": normalized_std(z1)}, batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 2), probe_views=2)
