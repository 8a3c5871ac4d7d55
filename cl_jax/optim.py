"""Optimisers and schedules: LARS / LAMB / SGD / AdamW, warmup then cosine decay, lr scaling.

- LARS (You et al. 2017) as in the BYOL reference (deepmind-research ``byol/utils/
  optimizers.py``): ``u = g + wd * w``; ``u *= eta * |w| / |u|``; momentum on ``u``; then
  the learning rate. Biases and BatchNorm parameters (every parameter with fewer than two
  dimensions) are excluded from weight decay and from the trust ratio (BYOL appendix C;
  SimCLR's ``EXCLUDE_FROM_WEIGHT_DECAY``). ``clip_lr=True`` is LARC's clipping as used by
  solo-learn: the per-layer rate ``lr * trust`` never exceeds ``lr``.
- LAMB (You et al. 2020, algorithm 2): Adam's bias-corrected moments, then LARS' decay and
  trust ratio (with ``eta = 1``) on the same parameters; biases and norms get plain Adam.
- Learning-rate scaling by the global batch: ``linear`` (``base_lr * batch / 256``, Goyal
  et al. 2017, the BYOL and SimCLR ImageNet recipes), ``sqrt`` (``base_lr * sqrt(batch)``,
  SimCLR appendix B.1) or ``none``.
- Schedule: linear warmup from 0 to the peak, then cosine decay to ``end_lr_factor * peak``.
- ``constant_lr_modules``: top-level modules (e.g. ``("predictor",)``) trained at the peak
  rate throughout, no warmup or decay: SimSiam's ``--fix-pred-lr`` (Chen & He 2021, section
  4.1; solo-learn's ``static_lr``).
- ``bias_lr_factor``: biases and BatchNorm parameters get ``factor x`` the rate: Barlow
  Twins trains them at 0.0048 x batch/256 beside 0.2 x batch/256 for the weights (Zbontar et
  al. 2021, section 4).
- ``frozen_modules``: top-level modules (e.g. ``("encoder",)``) whose parameters never
  change, and whose optimiser state is empty: LiT's locked image tower (Zhai et al. 2022).
"""

import math
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from cl_jax.errors import ConfigError


def scaled_learning_rate(base_lr, batch_size, scaling):
    """Peak learning rate from the base rate and the global batch size."""
    if scaling == "linear":
        return base_lr * batch_size / 256
    if scaling == "sqrt":
        return base_lr * math.sqrt(batch_size)
    if scaling == "none":
        return base_lr
    raise ValueError(f"optim.lr_scaling must be 'linear', 'sqrt' or 'none', got {scaling!r}")


def warmup_cosine(peak, warmup_steps, total_steps, end_factor=0.0):
    """Linear warmup over ``warmup_steps`` then cosine decay until ``total_steps``."""
    total_steps = max(int(total_steps), 1)
    warmup_steps = min(int(warmup_steps), total_steps - 1) if total_steps > 1 else 0
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=warmup_steps,
        decay_steps=total_steps, end_value=peak * end_factor)


def warmup_linear(peak, warmup_steps, total_steps, end_factor=0.0):
    """Linear warmup over ``warmup_steps`` then linear decay to ``peak * end_factor`` at
    ``total_steps`` (Hugging Face's ``get_linear_schedule_with_warmup``, which BERT, SimCSE
    and Sentence-BERT train with)."""
    total_steps = max(int(total_steps), 1)
    warmup_steps = min(int(warmup_steps), total_steps - 1) if total_steps > 1 else 0
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, warmup_steps),
         optax.linear_schedule(peak, peak * end_factor, total_steps - warmup_steps)],
        [warmup_steps])


SCHEDULES = {"cosine": warmup_cosine, "linear": warmup_linear}


def is_matrix(params):
    """Mask that is True for weights with two or more dimensions (not biases, not norms)."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def is_vector(params):
    """The complement of ``is_matrix``: biases and norm parameters."""
    return jax.tree.map(operator.not_, is_matrix(params))


class TrustRatioState(NamedTuple):
    count: jax.Array


def scale_by_trust_ratio(trust_coefficient, mask, learning_rate=None, clip_lr=False):
    """Scales each masked update ``u`` by ``eta * |w| / |u|`` (1 where either norm is 0).

    With ``clip_lr`` the factor is ``min(factor, lr) / lr`` (LARC), so the layer's effective
    rate is at most the global one.
    """

    def init(params):
        del params
        return TrustRatioState(count=jnp.zeros((), jnp.int32))

    def update(updates, state, params):
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate

        def scale(u, w, adapt):
            if not adapt:
                return u
            w_norm, u_norm = jnp.linalg.norm(w), jnp.linalg.norm(u)
            trust = jnp.where((w_norm > 0) & (u_norm > 0),
                              trust_coefficient * w_norm / jnp.maximum(u_norm, 1e-30), 1.0)
            if clip_lr:
                trust = jnp.minimum(trust / jnp.maximum(lr, 1e-30), 1.0)
            return u * trust.astype(u.dtype)

        updates = jax.tree.map(scale, updates, params, mask(params))
        return updates, TrustRatioState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def lars(learning_rate, weight_decay, momentum=0.9, trust_coefficient=0.001, clip_lr=False,
         mask=is_matrix):
    """LARS with decay and trust ratio on ``mask``ed parameters (see the module docstring)."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=mask),
        scale_by_trust_ratio(trust_coefficient, mask, learning_rate, clip_lr),
        optax.trace(decay=momentum),
        optax.scale_by_learning_rate(learning_rate),
    )


def lamb(learning_rate, weight_decay, b1=0.9, b2=0.999, eps=1e-6, mask=is_matrix):
    """LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning", algorithm 2).

    ``m_hat, v_hat``: Adam's moments of the gradient, bias-corrected; ``r = m_hat /
    (sqrt(v_hat) + eps) + wd * w``; ``w -= lr * |w| / |r| * r`` (``phi`` the identity; the
    ratio is 1 where either norm is 0, as in optax). Decay and trust ratio act on ``mask``ed
    parameters only, as TF-Addons' LAMB does by default (``exclude_from_layer_adaptation``
    follows ``exclude_from_weight_decay``); ``optax.lamb`` would apply the ratio to biases too.
    """
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay, mask=mask),
        scale_by_trust_ratio(1.0, mask),
        optax.scale_by_learning_rate(learning_rate),
    )


def base_optimizer(config, schedule):
    """The optimiser named ``config.name`` with learning rate ``schedule``."""
    name, wd = config.name, config.weight_decay
    if name == "lars":
        return lars(schedule, wd, config.momentum, config.trust_coefficient, config.clip_lr)
    if name == "lamb":
        return lamb(schedule, wd, config.b1, config.b2, config.get("lamb_eps", 1e-6))
    if name == "sgd":
        return optax.chain(optax.add_decayed_weights(wd, mask=is_matrix),
                           optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov))
    if name == "adamw":
        return optax.adamw(schedule, b1=config.b1, b2=config.b2, weight_decay=wd, mask=is_matrix)
    raise ValueError(f"optim.name must be 'lars', 'lamb', 'sgd' or 'adamw', got {name!r}")


def create_optimizer(config, schedule, peak_lr=None):
    """``config.name`` with learning rate ``schedule``; ``constant_lr_modules`` at ``peak_lr``,
    ``bias_lr_factor`` and ``frozen_modules`` as in the module docstring."""
    tx = base_optimizer(config, schedule)
    constant = tuple(config.get("constant_lr_modules", ()))
    if constant:
        tx = optax.multi_transform(
            {"scheduled": tx, "constant": base_optimizer(config, peak_lr)},
            module_labels("constant_lr_modules", constant, "constant", "scheduled"))
    factor = config.get("bias_lr_factor", 1.0)
    if factor != 1.0:
        tx = optax.chain(tx, optax.masked(optax.scale(factor), is_vector))
    frozen = tuple(config.get("frozen_modules", ()))
    if frozen:  # outermost: the other transforms keep no state for the frozen modules
        tx = optax.multi_transform(
            {"trained": tx, "frozen": optax.set_to_zero()},
            module_labels("frozen_modules", frozen, "frozen", "trained"))
    return tx


def module_labels(field, modules, inside, outside):
    """``optax.multi_transform`` labels: ``inside`` for the top-level ``modules``, else
    ``outside``; a ``ConfigError`` (at ``init``) if the params lack one of ``modules``."""

    def labels(params):
        if not set(modules) <= set(params):
            raise ConfigError(f"optim.{field} names {sorted(modules)}, but the network's "
                              f"top-level modules are {sorted(params)}; set "
                              f"--config.optim.{field} to some of them.")
        return {k: inside if k in modules else outside for k in params}

    return labels


def learning_rate_schedule(config, batch_size, total_steps, steps_per_epoch):
    """The run's schedule from ``config.optim``, the global batch and the step counts."""
    peak = scaled_learning_rate(config.base_lr, batch_size, config.lr_scaling)
    warmup = config.warmup_steps
    if warmup < 0:
        warmup = round(config.warmup_epochs * steps_per_epoch)
    schedule = config.get("schedule", "cosine")
    if schedule not in SCHEDULES:
        raise ConfigError(f"optim.schedule is {schedule!r}; choose one of "
                          f"{', '.join(SCHEDULES)}.")
    return SCHEDULES[schedule](peak, warmup, total_steps, config.end_lr_factor)


def with_online_probe(tx, probe_lr, total_steps):
    """Trains ``params['probe']`` (the online linear probe) with its own SGD, no decay.

    The probe must not see LARS trust ratios or the encoder's weight decay; it learns with
    SGD (momentum 0.9) at ``probe_lr`` decayed by a cosine over the run.
    """
    probe_tx = optax.sgd(optax.cosine_decay_schedule(probe_lr, max(int(total_steps), 1)),
                         momentum=0.9)
    labels = lambda params: {k: "probe" if k == "probe" else "model" for k in params}
    return optax.multi_transform({"model": tx, "probe": probe_tx}, labels)
