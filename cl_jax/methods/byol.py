"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent").

The online network (encoder, projector, predictor) regresses the target network's
projection of the other view: ``loss = byol(p1, sg(z2')) + byol(p2, sg(z1'))`` with
``byol(p, z) = mean(2 - 2 cos(p, z))`` — the sum of both directions, each a batch mean,
as in deepmind-research/byol (``byol_experiment.py``).

The target network (encoder + projector) is an extra parameter pytree in the train state,
updated after every optimizer step inside the jitted step:
``target <- tau * target + (1 - tau) * online`` with
``tau = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2`` (paper, section 3.2). The target's
BatchNorm runs in training mode on each batch; its running statistics are its own.

Each view is its own BatchNorm batch, in the online and in the target network
(``view_grouping = "per_view"``), as deepmind-research/byol ``byol_experiment.py`` forwards
``view1`` and ``view2`` separately.
"""

import jax

from cl_jax import losses
from cl_jax.methods._target import init_target, momentum_schedule, update_target
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.models import MLP

TARGET_MODULES = ("encoder", "projector")


class BYOL(Method):
    name = "byol"

    def projector(self):
        c = self.config
        return MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim)

    def build_network(self, encoder, num_classes):
        c = self.config
        predictor = MLP(hidden_dims=tuple(c.pred_hidden_dims), output_dim=c.proj_dim)
        return Network(encoder=encoder, projector=self.projector(), predictor=predictor,
                       num_classes=num_classes)

    def build_target_network(self, encoder):
        return Network(encoder=encoder, projector=self.projector())

    def init_extra(self, params, batch_stats, rng):
        return init_target(params, batch_stats, TARGET_MODULES)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views = batch["views"]
        outputs, batch_stats = self.forward(params, batch_stats, views[:2])
        targets, target_batch_stats = self.forward_target(
            extra["target_params"], extra["target_batch_stats"], views[:2])
        z1, z2 = (jax.lax.stop_gradient(t["projection"]) for t in targets)
        p1, p2 = outputs[0]["prediction"], outputs[1]["prediction"]
        loss = losses.byol(p1, z2) + losses.byol(p2, z1)
        tau = momentum_schedule(step, self.total_steps, self.config.tau_base)
        return loss, LossAux(metrics={"tau": tau}, batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 2), probe_views=2,
                             extra={"target_batch_stats": target_batch_stats})

    def update_extra(self, extra, params, aux, step):
        tau = momentum_schedule(step, self.total_steps, self.config.tau_base)
        target = update_target(extra["target_params"], params, tau)
        return {"target_params": target, "target_batch_stats": aux.extra["target_batch_stats"]}
