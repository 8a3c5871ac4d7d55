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
"""

import jax
import jax.numpy as jnp
import optax

from cl_jax import losses
from cl_jax.methods.base import LossAux, Method, Network, apply_to_views, probe_logits_of
from cl_jax.models import MLP

TARGET_MODULES = ("encoder", "projector")


def cosine_ema_decay(step, total_steps, base):
    """BYOL's target decay: ``1 - (1 - base) * (cos(pi * step / total) + 1) / 2``."""
    progress = jnp.minimum(step / total_steps, 1.0)
    return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


class BYOL(Method):
    name = "byol"

    def build_network(self, encoder, num_classes):
        c = self.config
        projector = MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim)
        predictor = MLP(hidden_dims=tuple(c.pred_hidden_dims), output_dim=c.proj_dim)
        self.target_network = Network(encoder=encoder, projector=projector)
        return Network(encoder=encoder, projector=projector, predictor=predictor,
                       num_classes=num_classes)

    def init_extra(self, params, batch_stats, rng):
        pick = lambda tree: {k: tree[k] for k in TARGET_MODULES if k in tree}
        return {"target_params": pick(params), "target_batch_stats": pick(batch_stats)}

    def loss(self, params, batch_stats, extra, views, labels, rng, step):
        outputs, batch_stats = self.forward(params, batch_stats, views[:2])
        targets, target_batch_stats = apply_to_views(
            self.target_network, extra["target_params"], extra["target_batch_stats"], views[:2])
        z1, z2 = (jax.lax.stop_gradient(t["projection"]) for t in targets)
        p1, p2 = outputs[0]["prediction"], outputs[1]["prediction"]
        loss = losses.byol(p1, z2) + losses.byol(p2, z1)
        tau = cosine_ema_decay(step, self.total_steps, self.config.tau_base)
        return loss, LossAux(metrics={"tau": tau}, batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 2), probe_views=2,
                             extra={"target_batch_stats": target_batch_stats})

    def update_extra(self, extra, params, aux, step):
        tau = cosine_ema_decay(step, self.total_steps, self.config.tau_base)
        online = {k: params[k] for k in TARGET_MODULES}
        target = optax.incremental_update(online, extra["target_params"], step_size=1.0 - tau)
        return {"target_params": target, "target_batch_stats": aux.extra["target_batch_stats"]}
