"""Fine-tuning: the encoder and a new linear head trained together on a fraction of the labels.

The semi-supervised protocol of SimCLR (Chen et al. 2020, arXiv:2002.05709, section 4 and
appendix B.5; google-research/simclr ``--train_mode=finetune``): a class-balanced draw of
1% or 10% of the training labels (about 12.8 and 128 ImageNet images per class, following
Zhai et al. 2019), the whole encoder fine-tuned with a linear head (zero-initialised, as
``--zero_init_logits_layer``) by SGD with Nesterov momentum 0.9, learning rate
``0.05 x batch / 256`` (0.8 at batch 4096) with no warmup and a cosine decay, no weight decay,
60 epochs for 1% and 30 for 10%; the only augmentation an Inception crop and a horizontal
flip; BatchNorm in training mode. The fine-tuned network is scored on centre crops.

The head sits on ``method.image_features`` (the features the frozen probes score: SimCLR v1's
choice; v2 fine-tunes from the projector's first layer, which this does not). Optional
mixup or CutMix of each batch (``cl_jax.mixing``), with the matching mixed targets.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cl_jax import mixing, parallel


@flax.struct.dataclass
class FineTuned:
    """The fine-tuned network's variables: ``params`` {"network", "head"}, ``batch_stats``."""

    params: dict
    batch_stats: dict


def balanced_subset(labels, fraction, seed=0):
    """Rows of ``labels`` (labels >= 0) making a class-balanced ``fraction`` of them: from every
    class ``max(1, round(fraction * count))`` rows drawn without replacement, sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == c)
        take = max(1, int(round(fraction * len(members))))
        chosen.append(rng.choice(members, take, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def global_batch_size(requested, num_examples, multiple):
    """The batch: ``requested`` or the subset's size if smaller, a whole multiple of
    ``multiple`` (the data-parallel devices and processes), at least one of it."""
    return max(multiple, min(requested, num_examples) // multiple * multiple)


def learning_rate(settings, batch_size):
    """``lr`` scaled as ``lr_scaling``: "linear" (``lr x batch / 256``, SimCLR's rule) or
    "none"."""
    return settings.lr * batch_size / 256 if settings.lr_scaling == "linear" else settings.lr


def head_logits(head, features):
    return features.astype(jnp.float32) @ head["w"] + head["b"]


def make_step(method, tx, num_classes, mix, alpha):
    """The jitted fine-tuning step ``(model, opt_state, images, labels, key) -> (model,
    opt_state, loss)``."""

    def loss_fn(params, batch_stats, images, labels, key):
        targets = jax.nn.one_hot(labels, num_classes)
        if mix != "none":
            images, perm, lam = mixing.mix_batch(mix, key, images, alpha)
            targets = mixing.mix_labels(targets, perm, lam)
        features, batch_stats = method.finetune_features(
            {"params": params["network"], "batch_stats": batch_stats}, images)
        logits = head_logits(params["head"], features)
        return jnp.mean(optax.softmax_cross_entropy(logits, targets)), batch_stats

    def step(model, opt_state, images, labels, key):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            model.params, model.batch_stats, images, labels, key)
        updates, opt_state = tx.update(grads, opt_state, model.params)
        params = optax.apply_updates(model.params, updates)
        return FineTuned(params, batch_stats), opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1))


def finetune(method, variables, batches, num_classes, *, steps, lr, momentum, nesterov,
             weight_decay, mix="none", mix_alpha=1.0, seed=0):
    """``variables`` ({"params", "batch_stats"} of the method's network) fine-tuned with a new
    head for ``steps`` on ``batches`` (an iterator of global (images, labels) arrays):
    ``(FineTuned, losses)``, the losses a float per step. The caller's variables are copied,
    never changed."""
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731 (donated below, not theirs)
    first = next(batches)
    dim = jax.eval_shape(method.image_features, variables, first[0]).shape[-1]
    head = {"w": jnp.zeros((dim, num_classes)), "b": jnp.zeros((num_classes,))}
    model = FineTuned({"network": copy(variables["params"]), "head": head},
                      copy(variables.get("batch_stats", {})))
    schedule = optax.cosine_decay_schedule(lr, max(steps, 1))
    tx = optax.chain(optax.add_decayed_weights(weight_decay) if weight_decay else
                     optax.identity(),
                     optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov))
    opt_state = tx.init(model.params)
    step = make_step(method, tx, num_classes, mix, mix_alpha)
    key, losses = jax.random.key(seed), []
    for i in range(steps):
        images, labels = first if i == 0 else next(batches)
        model, opt_state, loss = step(model, opt_state, images, labels,
                                      jax.random.fold_in(key, i))
        losses.append(loss)
    return model, [float(parallel.to_host(x)) for x in losses]


def predictor(method):
    """``(params, batch_stats, images) -> predicted classes``, BatchNorm in inference mode,
    for ``FineTuned`` variables."""

    def predict(params, batch_stats, images):
        features = method.image_features({"params": params["network"],
                                          "batch_stats": batch_stats}, images)
        return jnp.argmax(head_logits(params["head"], features), axis=-1)

    return predict
