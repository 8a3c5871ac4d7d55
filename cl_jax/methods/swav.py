"""SwAV (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", arXiv:2006.09882), with multi-crop.

Every crop ``v`` (the global crops, then multi-crop's local ones) goes through the encoder and
the projector (2048-128 for ResNet-50); its L2-normalised embedding ``z_v`` is scored against
``K`` L2-normalised prototypes ``c_k`` (3000 for ImageNet): ``s_v = z_v C^T``, cosine scores.
For each global crop ``i`` (``crops_for_assign``) the codes ``q_i = sinkhorn_knopp(s_i)``
(epsilon 0.05, 3 iterations, over the global batch, stop-gradient) are predicted from every
other crop: ``loss = losses.swav(s, codes_from=crops_for_assign, temperature=0.1)``, i.e.
``mean_i 1/(V-1) sum_{v != i} mean_b -sum_k q_ik log softmax(s_v / T)_k``, as
facebookresearch/swav ``main_swav.py``.

Prototypes. They are the bias-free kernel of the ``Prototypes`` head (``params['predictor']``).
The reference re-normalises that kernel in place before every forward pass
(``w = F.normalize(w); prototypes.weight.copy_(w)``); a method here cannot write to the
parameters, so the head normalises the kernel in its forward pass instead. The scores are the
same; the gradient reaching the raw kernel is the reference's with its radial component
removed (it would only change the norm that the next re-normalisation discards). The
prototypes receive no gradient for the first ``freeze_prototypes_epochs`` epochs (the
reference's ``freeze_prototypes_niters``, solo-learn's ``freeze_prototypes_epochs``): the
reference sets their gradient to None; here they are stop-gradient'd, so only weight decay
moves them, which rescales the kernel and leaves the normalised prototypes unchanged.

Queue (``queue_length > 0``; 3840 for batch 256 on ImageNet, none at batch 4096). From epoch
``queue_start_epoch`` on (15 in the paper's batch-256 runs), the global crops' embeddings of
every batch are pushed into a FIFO of ``queue_length`` rows per code crop (``extra['queue']``,
a ring buffer with pointer ``queue_ptr``); once it is full, Sinkhorn runs on the queued
embeddings' scores against the current prototypes stacked on the batch's scores, and only
the batch's codes are kept — the reference's ``use_the_queue``. Sinkhorn then equipartitions
``B + queue_length`` samples, which stabilises small batches.

Multi-crop: crops of one resolution share one forward pass (``view_grouping =
"per_resolution"``), so BatchNorm statistics are over all crops of that size, as in the
reference's backbone. (The reference
then runs the projector once on all crops together; here each resolution's crops have their
own projector BatchNorm statistics.) The online probe sees the global crops.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.losses._utils import l2_normalize
from cl_jax.methods.base import LossAux, Method, Network, frozen_while, probe_logits_of
from cl_jax.models import MLP


def normalized_prototypes(kernel):
    """The prototypes of a ``(D, K)`` kernel: its columns, each L2-normalised."""
    return l2_normalize(kernel, axis=0)


class Prototypes(nn.Module):
    """Cosine scores ``normalize(x) @ normalize(C)``: ``(B, D) -> (B, K)``, no bias."""

    num_prototypes: int

    @nn.compact
    def __call__(self, x, train: bool = True):
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (x.shape[-1], self.num_prototypes))
        return l2_normalize(x) @ normalized_prototypes(kernel)


class SwAV(Method):
    name = "swav"
    uses_local_views = True
    view_grouping = "per_resolution"

    @classmethod
    def validate(cls, config):
        length = config.method.queue_length
        if length and length < config.batch_size:
            raise ConfigError(f"method.queue_length ({length}) must be at least the global "
                              f"batch size ({config.batch_size}); set "
                              f"--config.method.queue_length={config.batch_size} or more, or 0 "
                              "for no queue.")

    def build_network(self, encoder, num_classes):
        c = self.config
        projector = MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim)
        return Network(encoder=encoder, projector=projector,
                       predictor=Prototypes(c.num_prototypes), num_classes=num_classes)

    def epochs_to_steps(self, epochs):
        return round(epochs * self.steps_per_epoch)

    def init_extra(self, params, batch_stats, rng):
        c = self.config
        if not c.queue_length:
            return {}
        shape = (len(c.crops_for_assign), c.queue_length, c.proj_dim)
        return {"queue": jnp.zeros(shape, jnp.float32), "queue_ptr": jnp.zeros((), jnp.int32),
                "queue_size": jnp.zeros((), jnp.int32)}

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views = batch["views"]
        c = self.config
        frozen = step < self.epochs_to_steps(c.freeze_prototypes_epochs)
        params = dict(params, predictor=frozen_while(params["predictor"], frozen))
        outputs, batch_stats = self.forward(params, batch_stats, views)
        scores = [o["prediction"] for o in outputs]
        crops = tuple(c.crops_for_assign)
        swav = lambda queue_scores=None: losses.swav(
            scores, codes_from=crops, temperature=c.temperature, epsilon=c.epsilon,
            num_iters=c.sinkhorn_iterations, queue_scores=queue_scores)
        metrics, aux_extra = {}, None
        if c.queue_length:
            prototypes = jax.lax.stop_gradient(
                normalized_prototypes(params["predictor"]["kernel"]))
            queue_scores = [q @ prototypes for q in extra["queue"]]
            use_queue = extra["queue_size"] >= c.queue_length
            loss = jax.lax.cond(use_queue, lambda: swav(queue_scores), swav)
            embeddings = jnp.stack([l2_normalize(outputs[i]["projection"]) for i in crops])
            aux_extra = {"embeddings": jax.lax.stop_gradient(embeddings)}
            metrics["queue_used"] = use_queue.astype(jnp.float32)
        else:
            loss = swav()
        return loss, LossAux(metrics=metrics, batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 2), probe_views=2,
                             extra=aux_extra)

    def update_extra(self, extra, params, aux, step):
        """Pushes the global crops' embeddings (``(n_crops, B, D)``) into the queue."""
        length = self.config.queue_length
        if not length:
            return extra
        new = aux.extra["embeddings"]
        batch = new.shape[1]
        rows = (extra["queue_ptr"] + jnp.arange(batch)) % length
        active = step >= self.epochs_to_steps(self.config.queue_start_epoch)
        pick = lambda pushed, kept: jnp.where(active, pushed, kept)
        return {"queue": pick(extra["queue"].at[:, rows].set(new), extra["queue"]),
                "queue_ptr": pick((extra["queue_ptr"] + batch) % length, extra["queue_ptr"]),
                "queue_size": pick(jnp.minimum(extra["queue_size"] + batch, length),
                                   extra["queue_size"])}
