"""VICReg (Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", arXiv:2105.04906).

One network (encoder + "expander" projector) on both views;
``loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance``
(:func:`cl_jax.losses.vicreg`): the mean squared distance between the two embeddings, a
hinge keeping every dimension's standard deviation above 1, and the squared off-diagonal
covariances. No predictor, no stop-gradient, no extra state. Each view is its own
BatchNorm batch (``view_grouping = "per_view"``), as the reference forwards ``x`` and ``y``
separately. The three unweighted terms are
logged (``invariance``, ``variance``, ``covariance``).

All three terms are over the global batch (under ``jit`` the loss sees every device's rows;
the reference gathers the embeddings for the variance and covariance terms).

Defaults from the paper's ImageNet implementation details and facebookresearch/vicreg
``main_vicreg.py``: expander ``8192-8192-8192`` (``MLP(hidden_dims=(8192, 8192),
output_dim=8192)``, BatchNorm and ReLU after the first two layers), ``sim_coeff = 25``,
``std_coeff = 25``, ``cov_coeff = 1``. The loss convention is the official one (variance
averaged over the two branches; solo-learn sums it, which is twice this term).
"""

from cl_jax import losses
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.models import MLP


class VICReg(Method):
    name = "vicreg"

    def build_network(self, encoder, num_classes):
        c = self.config
        projector = MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim)
        return Network(encoder=encoder, projector=projector, num_classes=num_classes)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views = batch["views"]
        c = self.config
        outputs, batch_stats = self.forward(params, batch_stats, views[:2])
        z1, z2 = outputs[0]["projection"], outputs[1]["projection"]
        loss = losses.vicreg(z1, z2, sim_coeff=c.sim_coeff, std_coeff=c.std_coeff,
                             cov_coeff=c.cov_coeff)
        return loss, LossAux(metrics=losses.vicreg_terms(z1, z2), batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 2), probe_views=2)
