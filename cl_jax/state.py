"""The train state and the train step: pure JAX, no TensorFlow (benchmarks use them too).

``TrainState`` is one pytree: step, params, BatchNorm statistics, optimiser state, and the
method's extra state (EMA target, queue, prototypes, ...). ``make_train_step`` returns the
pure function ``state, batch -> state, metrics`` that the loop jits once with the state
donated.

Non-finite guard: a step whose loss, gradients or parameter updates contain a NaN or an
infinity changes nothing but the step counter (params, BatchNorm statistics, optimiser and
extra state keep their values) and is counted in ``nonfinite_steps``; the first such step is
``first_nonfinite_step``. The loop then skips on or stops (config ``nonfinite``). A skipped
step also leaves the optimiser's own step count behind, as ``optax.apply_if_finite`` does.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from cl_jax import methods, mixing, models, optim


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    extra: Any
    nonfinite_steps: jax.Array  # steps skipped because of a NaN / inf (int32)
    first_nonfinite_step: jax.Array  # the first of them, -1 if none (int32)


def create_method_and_optimizer(config, num_classes, total_steps, steps_per_epoch,
                                encoder=None):
    """The method (network and loss), lr schedule and optimiser a config describes.

    ``num_classes > 0`` adds the online linear probe (with its own optimiser). ``encoder``:
    one made already (a pretrained text tower), instead of the config's.
    """
    method = create_method(config, num_classes, total_steps, steps_per_epoch, encoder)
    schedule = optim.learning_rate_schedule(config.optim, config.batch_size, total_steps,
                                            steps_per_epoch)
    peak_lr = optim.scaled_learning_rate(config.optim.base_lr, config.batch_size,
                                         config.optim.lr_scaling)
    tx = optim.create_optimizer(config.optim, schedule, peak_lr)
    if num_classes:
        tx = optim.with_online_probe(tx, config.probe_lr, total_steps)
    return method, schedule, tx


def create_method(config, num_classes, total_steps, steps_per_epoch, encoder=None):
    """The method (network and loss) a config describes, with the config's encoder unless
    ``encoder`` is given."""
    m = config.model
    if encoder is None and m.encoder == "text":
        encoder = models.create_text_encoder(m.text, jnp.dtype(m.dtype), m.remat)
    elif encoder is None:
        encoder = models.create_encoder(
            m.encoder, stem=m.stem, widths=m.widths, width_multiplier=m.width_multiplier,
            zero_init_residual=m.zero_init_residual, patch_size=m.patch_size,
            num_heads=m.num_heads, posemb=m.posemb,
            frozen_patch_embedding=m.frozen_patch_embedding, dtype=jnp.dtype(m.dtype),
            remat=m.remat, norm=m.get("norm", "batch"))
    return methods.create_method(config.method, encoder, num_classes, total_steps,
                                 steps_per_epoch)


def init_train_state(method, tx, rng, sample) -> TrainState:
    """Initialises the network on ``sample`` (``method.sample_inputs``) and the optimiser."""
    init_rng, extra_rng = jax.random.split(rng)
    variables = method.init_variables(init_rng, sample)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    extra = method.init_extra(params, batch_stats, extra_rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params), extra=extra,
                      nonfinite_steps=jnp.zeros((), jnp.int32),
                      first_nonfinite_step=jnp.full((), -1, jnp.int32))


def online_probe_loss(logits, labels, num_views, mix=None):
    """Cross-entropy and accuracy of the online probe; labels < 0 (unknown) are ignored.
    ``mix``: ``(perm, lam)`` of views mixed as ``cl_jax.mixing`` does; the targets are then
    ``lam y + (1 - lam) y[perm]`` (rows with either label unknown ignored), the accuracy that
    of each row's own label."""
    logits = logits.astype(jnp.float32)
    valid = labels >= 0
    targets = jax.nn.one_hot(jnp.maximum(labels, 0), logits.shape[-1])
    if mix is not None:
        perm, lam = mix
        valid = valid & valid[perm]
        targets = mixing.mix_labels(targets, perm, lam)
    labels, valid = jnp.tile(labels, num_views), jnp.tile(valid, num_views)
    count = jnp.maximum(jnp.sum(valid), 1)
    ce = optax.softmax_cross_entropy(logits, jnp.tile(targets, (num_views, 1)))
    correct = jnp.argmax(logits, axis=-1) == labels
    return jnp.sum(ce * valid) / count, jnp.sum(correct * valid) / count


def loss_and_grads(method, state: TrainState, batch, rng):
    """The method's loss plus the online probe's, and their gradients w.r.t. ``state.params``.

    Returns ``(metrics, aux, grads)``; ``metrics['loss']`` is the method's loss alone.
    """
    inputs = {k: batch[k] for k in method.inputs}
    labels = batch.get("label")

    def loss_fn(params):
        loss, aux = method.loss(params, state.batch_stats, state.extra, inputs, rng, state.step)
        metrics = dict(aux.metrics, loss=loss)
        total = loss
        if aux.probe_logits is not None and labels is not None:
            probe_loss, probe_acc = online_probe_loss(aux.probe_logits, labels, aux.probe_views,
                                                      aux.probe_mix)
            total = total + probe_loss
            metrics.update(probe_loss=probe_loss, probe_acc=probe_acc)
        return total, (metrics, aux)

    (_, (metrics, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return metrics, aux, grads


def all_finite(*trees):
    """True (a traced bool) if every element of every array in ``trees`` is finite."""
    leaves = [x for tree in trees for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves \
        else jnp.bool_(True)


def select(pred, new, old):
    """``new`` where ``pred`` else ``old``, leaf by leaf (PRNG key leaves included)."""

    def one(n, o):
        if jax.dtypes.issubdtype(n.dtype, jax.dtypes.prng_key):
            data = jnp.where(pred, jax.random.key_data(n), jax.random.key_data(o))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(n))
        return jnp.where(pred, n, o)

    return jax.tree.map(one, new, old)


def make_train_step(method, tx, schedule, seed, augment=None):
    """The train step for ``method``: loss and gradients, optimiser update, extra update.

    The step's randomness is ``fold_in(key(seed), step)``, so it depends on nothing but the
    seed and the step number (a resumed run draws the same numbers). A step with a
    non-finite loss, gradient or update is skipped (see the module docstring); the
    ``nonfinite_steps`` metric counts them. ``augment(views, key)``, if given, runs first on
    the batch's views (the colour ops on the accelerator, ``cl_jax.device_augment``).
    """

    def train_step(state: TrainState, batch):
        rng = jax.random.fold_in(jax.random.key(seed), state.step)
        if augment is not None:
            rng, augment_rng = jax.random.split(rng)
            batch = dict(batch, views=augment(batch["views"], augment_rng))
        metrics, aux, grads = loss_and_grads(method, state, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = method.constrain_params(optax.apply_updates(state.params, updates))
        extra = method.update_extra(state.extra, params, aux, state.step)
        model_grads = {k: v for k, v in grads.items() if k != "probe"}
        metrics.update(lr=schedule(state.step), grad_norm=optax.tree.norm(model_grads))
        finite = all_finite(metrics["loss"], grads, updates)
        keep = lambda new, old: select(finite, new, old)
        nonfinite_steps = state.nonfinite_steps + jnp.where(finite, 0, 1).astype(jnp.int32)
        first = jnp.where((state.first_nonfinite_step < 0) & ~finite, state.step + 1,
                          state.first_nonfinite_step)
        new_state = state.replace(
            step=state.step + 1, params=keep(params, state.params),
            batch_stats=keep(aux.batch_stats, state.batch_stats),
            opt_state=keep(opt_state, state.opt_state), extra=keep(extra, state.extra),
            nonfinite_steps=nonfinite_steps, first_nonfinite_step=first)
        metrics.update(nonfinite_steps=nonfinite_steps)
        return new_state, metrics

    return train_step
