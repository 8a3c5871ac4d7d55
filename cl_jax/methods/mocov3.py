"""MoCo v3 (Chen, Xie & He 2021, "An Empirical Study of Training Self-Supervised Vision
Transformers", arXiv:2104.02057).

Networks (facebookresearch/moco-v3 ``moco/builder.py``): the online network is the encoder,
a projector and a predictor; the momentum network (an extra pytree in the train state) is
the EMA of the encoder and projector. Heads are MLPs with BatchNorm and ReLU on the hidden
layers (4096 wide) and a 256-d output:

- projector: 2 layers for ResNet, 3 for ViT (``proj_hidden_dims`` = (4096,) / (4096, 4096)),
  its output followed by a BatchNorm without scale and bias (SimCLR v2's design);
- predictor: 2 layers (``pred_hidden_dims`` = (4096,)), the same output BatchNorm for ViT
  but none for ResNet (``pred_output_norm``), as ``MoCo_ResNet`` / ``MoCo_ViT``.

Loss. With ``q_i = pred(proj(f(x_i)))`` and ``k_i = sg(proj'(f'(x_i)))`` for the two views,
``L = 2T [info_nce(q1, k2) + info_nce(q2, k1)]``, each term InfoNCE against the other keys
of the global batch (in-batch negatives, no queue): the official ``contrastive_loss``
multiplies the cross-entropy by ``2T`` and sums the two directions, and so does this loss,
so that the official learning rates and weight decays carry over (the factor rescales the
gradient). T = 1.0 for ResNet-50, 0.2 for ViT (official defaults / CONFIG.md). Each view is
its own BatchNorm batch in both networks, as the reference forwards ``x1`` and ``x2``
separately.

Momentum: ``m = 1 - (1 - m_0) (cos(pi k / K) + 1) / 2`` from ``m_0 = tau_base`` (0.99; 0.996
for the 1000-epoch ResNet-50 recipe) to 1, per step (the reference recomputes it per
epoch). The reference updates the momentum encoder at the start of each step from the
current weights; updating it at the end of the previous step from the same weights, as
here, is the same sequence of networks.
"""

import flax.linen as nn
import jax

from cl_jax import losses
from cl_jax.methods._target import init_target, momentum_schedule, update_target
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.models import MLP

TARGET_MODULES = ("encoder", "projector")


class Head(nn.Module):
    """``MLP`` (BatchNorm + ReLU on hidden layers), then optionally BatchNorm without affine.

    The final linear layer's bias is cancelled exactly by the output BatchNorm (and gets no
    gradient), so ``output_norm=True`` matches the reference's bias-free layer; without the
    output BatchNorm (ResNet predictor) that layer keeps a bias the reference does not have.
    """

    hidden_dims: tuple
    output_dim: int
    output_norm: bool = True

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = MLP(hidden_dims=tuple(self.hidden_dims), output_dim=self.output_dim, name="mlp")(
            x, train)
        if self.output_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, use_scale=False,
                             use_bias=False, name="output_norm")(x)
        return x


class MoCoV3(Method):
    name = "mocov3"

    def projector(self):
        c = self.config
        return Head(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim)

    def build_network(self, encoder, num_classes):
        c = self.config
        predictor = Head(hidden_dims=tuple(c.pred_hidden_dims), output_dim=c.proj_dim,
                         output_norm=c.pred_output_norm)
        return Network(encoder=encoder, projector=self.projector(), predictor=predictor,
                       num_classes=num_classes)

    def build_target_network(self, encoder):
        return Network(encoder=encoder, projector=self.projector())

    def init_extra(self, params, batch_stats, rng):
        return init_target(params, batch_stats, TARGET_MODULES)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views = batch["views"]
        c = self.config
        outputs, batch_stats = self.forward(params, batch_stats, views[:2])
        targets, target_batch_stats = self.forward_target(
            extra["target_params"], extra["target_batch_stats"], views[:2])
        k1, k2 = (jax.lax.stop_gradient(t["projection"]) for t in targets)
        q1, q2 = outputs[0]["prediction"], outputs[1]["prediction"]
        t = c.temperature
        loss = 2 * t * (losses.info_nce(q1, k2, temperature=t)
                        + losses.info_nce(q2, k1, temperature=t))
        tau = momentum_schedule(step, self.total_steps, c.tau_base)
        return loss, LossAux(metrics={"tau": tau}, batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 2), probe_views=2,
                             extra={"target_batch_stats": target_batch_stats})

    def update_extra(self, extra, params, aux, step):
        tau = momentum_schedule(step, self.total_steps, self.config.tau_base)
        return {"target_params": update_target(extra["target_params"], params, tau),
                "target_batch_stats": aux.extra["target_batch_stats"]}
