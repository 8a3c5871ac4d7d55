"""Barlow Twins (Zbontar, Jing, Misra, LeCun & Deny 2021, "Barlow Twins: Self-Supervised
Learning via Redundancy Reduction", arXiv:2103.03230).

One network (encoder + projector) on both views; the cross-correlation matrix ``C`` of the
two batches of embeddings, each dimension standardised over the batch, is pushed towards
the identity:
``loss = scale_loss * (sum_i (1 - C_ii)^2 + lambda_ * sum_{i != j} C_ij^2)``
(:func:`cl_jax.losses.barlow_twins`). No predictor, no stop-gradient, no extra state. Each
view is its own BatchNorm batch (``view_grouping = "per_view"``), as the reference
(``z1 = projector(backbone(y1))``, then ``y2``) and solo-learn forward them.

``C`` is over the global batch: under ``jit`` the loss sees every device's rows, as the
reference's all-reduce of ``C`` does (facebookresearch/barlowtwins ``main.py``; that code
standardises with per-device statistics, here they are the global batch's).

Defaults from the paper's implementation details (ImageNet, ResNet-50): projector of
three linear layers of 8192 units, BatchNorm and ReLU after the first two
(``MLP(hidden_dims=(8192, 8192), output_dim=8192)``; its output bias is cancelled by the
standardisation), ``lambda_ = 0.0051`` (the official code's ``--lambd``; the paper writes
5e-3), ``scale_loss = 1``.
``scale_loss`` is solo-learn's factor (0.1 in its CIFAR and ImageNet-100 recipes): under
LARS it changes the balance between the gradient and the weight decay, and the step of the
parameters excluded from the trust ratio (biases, BatchNorm).
"""

from cl_jax import losses
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.models import MLP


class BarlowTwins(Method):
    name = "barlow_twins"

    def build_network(self, encoder, num_classes):
        c = self.config
        projector = MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim)
        return Network(encoder=encoder, projector=projector, num_classes=num_classes)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views = batch["views"]
        outputs, batch_stats = self.forward(params, batch_stats, views[:2])
        z1, z2 = outputs[0]["projection"], outputs[1]["projection"]
        loss = self.config.scale_loss * losses.barlow_twins(z1, z2, lambda_=self.config.lambda_)
        return loss, LossAux(metrics={}, batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 2), probe_views=2)
