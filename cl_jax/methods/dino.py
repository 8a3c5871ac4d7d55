"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers",
arXiv:2104.14294): self-distillation with no labels, with multi-crop.

Student: encoder + DINO head (``DINOHead``: a 3-layer MLP 2048-2048-256 with exact GELU,
L2 normalisation of the 256-d bottleneck, then a weight-normalised bias-free linear layer to
``out_dim`` = 65536 logits). Teacher: the same network with the EMA of the student's weights,
``teacher <- m teacher + (1 - m) student`` after every optimizer step, with
``m = 1 - (1 - m_base) (cos(pi k / K) + 1) / 2``, ``m_base = 0.996`` (the reference's
``momentum_schedule``; the same cosine as BYOL's). The teacher sees only the global crops,
the student every crop; ``loss = losses.dino(student, teacher, center, 0.1, T_t)``: the mean
over all (teacher crop ``iq``, student crop ``v != iq``) pairs of
``mean_b sum_k -softmax((t_iq - c) / T_t) log softmax(s_v / 0.1)``, as facebookresearch/dino
``DINOLoss``. The teacher temperature ``T_t`` warms up linearly, per epoch, from
``warmup_teacher_temp`` (0.04) to ``teacher_temp`` over ``warmup_teacher_temp_epochs``
(``np.linspace`` as the reference; 0 epochs: constant ``teacher_temp``). The center
``c <- 0.9 c + 0.1 mean(teacher logits)`` (``losses.dino_center_update``, global batch, both
global crops) lives in ``extra['center']`` and is updated after each step from that step's
teacher outputs, as ``DINOLoss.update_center``.

The weight-normalised last layer is ``g * v / |v|`` per output unit with ``g = 1`` fixed
(``norm_last_layer=True``, the default) or learnt (``False``, the reference's ViT-S "boost"
setting). It receives no gradient during the first ``freeze_last_layer_epochs`` epochs (the
reference's ``cancel_gradients_last_layer``; here a stop-gradient, under which weight decay
only rescales ``v`` and leaves the normalised layer unchanged). Head initialisation: normal
(std 0.02) weights and zero biases as the reference's ``trunc_normal_(std=.02)`` (whose
+-2 bounds are 100 standard deviations away); ``use_bn`` adds BatchNorm after the hidden
layers (the reference's ``use_bn_in_head``).

The teacher's BatchNorm (ResNet encoders, ``use_bn``) runs in training mode on each batch,
as the reference's teacher, which is never put in eval mode; its running statistics are its
own. Crops of one resolution share one forward pass in the student and the teacher
(``view_grouping = "per_resolution"``), as the reference's ``MultiCropWrapper``. Not here (the
shared optimiser has no such option): the reference's per-parameter gradient clipping
(``clip_grad=3.0`` for ViTs, 0 for the ResNet-50 run) and the cosine weight-decay schedule
0.04 -> 0.4 of its AdamW ViT runs; ``optim.weight_decay`` is constant.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.losses._utils import l2_normalize
from cl_jax.methods._target import init_target, momentum_schedule, update_target
from cl_jax.methods.base import LossAux, Method, Network, frozen_while, probe_logits_of

TEACHER_MODULES = ("encoder", "projector")
LAST_LAYER = ("prototypes", "prototype_scale")


class DINOHead(nn.Module):
    """MLP (exact GELU) -> L2-normalised bottleneck -> weight-normalised linear, no bias."""

    hidden_dims: Sequence[int] = (2048, 2048)
    bottleneck_dim: int = 256
    out_dim: int = 65536
    use_bn: bool = False
    norm_last_layer: bool = True

    @nn.compact
    def __call__(self, x, train: bool = True):
        init = nn.initializers.normal(0.02)
        for width in self.hidden_dims:
            x = nn.Dense(width, kernel_init=init)(x)
            if self.use_bn:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            x = nn.gelu(x, approximate=False)
        x = l2_normalize(nn.Dense(self.bottleneck_dim, kernel_init=init)(x))
        v = self.param("prototypes", nn.initializers.lecun_normal(),
                       (self.bottleneck_dim, self.out_dim))
        w = l2_normalize(v, axis=0)
        if not self.norm_last_layer:
            w = w * self.param("prototype_scale", nn.initializers.ones, (self.out_dim,))
        return x @ w


def teacher_temperature(epoch, warmup, final, warmup_epochs):
    """``np.linspace(warmup, final, warmup_epochs)[epoch]`` during warmup, then ``final``."""
    if warmup_epochs <= 0:
        return jnp.asarray(final, jnp.float32)
    ramp = warmup + (final - warmup) * epoch / max(warmup_epochs - 1, 1)
    return jnp.where(epoch < warmup_epochs, ramp, final).astype(jnp.float32)


class DINO(Method):
    name = "dino"
    uses_local_views = True
    view_grouping = "per_resolution"

    def head(self):
        c = self.config
        return DINOHead(hidden_dims=tuple(c.head_hidden_dims), bottleneck_dim=c.bottleneck_dim,
                        out_dim=c.out_dim, use_bn=c.use_bn_in_head,
                        norm_last_layer=c.norm_last_layer)

    def build_network(self, encoder, num_classes):
        return Network(encoder=encoder, projector=self.head(), num_classes=num_classes)

    def build_target_network(self, encoder):
        return Network(encoder=encoder, projector=self.head())

    def init_extra(self, params, batch_stats, rng):
        return {**init_target(params, batch_stats, TEACHER_MODULES, prefix="teacher"),
                "center": jnp.zeros((self.config.out_dim,), jnp.float32)}

    def teacher_temp(self, step):
        c = self.config
        epoch = jnp.floor(step / self.steps_per_epoch)
        return teacher_temperature(epoch, c.warmup_teacher_temp, c.teacher_temp,
                                   c.warmup_teacher_temp_epochs)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views = batch["views"]
        c = self.config
        frozen = step < round(c.freeze_last_layer_epochs * self.steps_per_epoch)
        head = {k: frozen_while(v, frozen) if k in LAST_LAYER else v
                for k, v in params["projector"].items()}
        outputs, batch_stats = self.forward(dict(params, projector=head), batch_stats, views)
        teacher, teacher_batch_stats = self.forward_target(
            extra["teacher_params"], extra["teacher_batch_stats"], views[:c.num_teacher_views])
        teacher_logits = [jax.lax.stop_gradient(t["projection"]) for t in teacher]
        temp = self.teacher_temp(step)
        loss = losses.dino([o["projection"] for o in outputs], teacher_logits, extra["center"],
                           student_temp=c.student_temp, teacher_temp=temp)
        center = losses.dino_center_update(extra["center"], teacher_logits, c.center_momentum)
        momentum = momentum_schedule(step, self.total_steps, c.momentum_teacher)
        return loss, LossAux(metrics={"teacher_temp": temp, "momentum": momentum},
                             batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, c.num_teacher_views),
                             probe_views=c.num_teacher_views,
                             extra={"teacher_batch_stats": teacher_batch_stats,
                                    "center": center})

    def update_extra(self, extra, params, aux, step):
        m = momentum_schedule(step, self.total_steps, self.config.momentum_teacher)
        teacher = update_target(extra["teacher_params"], params, m)
        return {"teacher_params": teacher, **aux.extra}
