"""Clustering / self-distillation losses: SwAV's Sinkhorn-Knopp codes and swapped
prediction, and DINO's centred self-distillation.

Scores and logits are ``(B, K)`` per crop: a sequence of such arrays (one per crop) or one
``(n_crops, B, K)`` array. All return float32 (bfloat16 inputs are upcast first) and are pure
``jax.numpy``. Every batch statistic (Sinkhorn's sums, DINO's centre) is over the global
batch: under ``jit`` with the batch sharded across devices XLA inserts the cross-device
reductions that the official code does with ``all_reduce``.
"""

import jax
import jax.numpy as jnp

from cl_jax.losses._utils import to_float32


def _crops(x):
    return [to_float32(c) for c in x]


def sinkhorn_knopp(scores, epsilon=0.05, num_iters=3):
    """SwAV's Sinkhorn-Knopp soft codes (Caron et al. 2020, "Unsupervised Learning of Visual
    Features by Contrasting Cluster Assignments").

    As ``distributed_sinkhorn`` in facebookresearch/swav ``main_swav.py``:
    ``Q = exp(scores / epsilon).T`` (``K x B``), normalised to total 1, then ``num_iters``
    times: each row (prototype) rescaled to sum ``1/K``, each column (sample) to ``1/B``;
    returns ``(Q * B).T``, ``(B, K)`` codes whose rows sum to 1.

    ``scores`` are subtracted their global maximum before the exponential, which only scales
    ``Q`` by a constant that the first normalisation removes: the result is unchanged, but
    cannot overflow. (Underflow is as in the official code: with cosine scores the exponent
    spans at most ``2 / epsilon``.) The codes are targets: the result is stop-gradient'd.
    ``B`` is the global batch: under ``jit`` with sharded scores the sums are global, as the
    official ``all_reduce`` s. ``num_iters`` must be a Python int (static under jit).
    """
    scores = jax.lax.stop_gradient(to_float32(scores))
    batch, k = scores.shape
    q = jnp.exp((scores - jnp.max(scores)) / epsilon).T
    q = q / jnp.sum(q)

    def step(_, q):
        q = q / jnp.sum(q, axis=1, keepdims=True) / k
        return q / jnp.sum(q, axis=0, keepdims=True) / batch

    q = jax.lax.fori_loop(0, num_iters, step, q)
    return (q * batch).T


def swav(
    scores,
    codes_from=(0, 1),
    temperature=0.1,
    epsilon=0.05,
    num_iters=3,
    queue_scores=None,
):
    """SwAV swapped prediction, multi-crop (Caron et al. 2020).

    For each code crop ``i`` in ``codes_from`` (the global crops), codes
    ``q_i = sinkhorn_knopp(scores[i])`` (detached); then
    ``loss_i = 1/(n_crops - 1) sum_{v != i} mean_b -sum_k q_i log softmax(scores[v] / T)``
    and ``loss = mean_i loss_i`` over the code crops. This is facebookresearch/swav
    ``main_swav.py`` exactly (``subloss / (sum(nmb_crops) - 1)``, then
    ``/ len(crops_for_assign)``); lightly ``SwaVLoss`` and solo-learn ``swav_loss_func`` +
    ``SinkhornKnopp`` compute the same.

    Args:
      scores: per-crop ``(B, K)`` scores (features . normalised prototypes), a sequence or
        an ``(n_crops, B, K)`` array; crops may come from different resolutions but share
        ``B``.
      codes_from: indices of the crops whose codes are targets (the official
        ``crops_for_assign``); a tuple of Python ints (static under jit).
      temperature: softmax temperature ``T`` of the predictions.
      epsilon, num_iters: see :func:`sinkhorn_knopp`.
      queue_scores: optional, one ``(L, K)`` array per code crop: scores of queued features
        of earlier batches against the current prototypes. As the official code, they are
        prepended to that crop's scores before Sinkhorn and only the batch's codes are kept.
    """
    scores = _crops(scores)
    n_crops = len(scores)
    if queue_scores is not None and len(queue_scores) != len(codes_from):
        raise ValueError("queue_scores needs one array per crop in codes_from")
    log_probs = [jax.nn.log_softmax(s / temperature, axis=-1) for s in scores]
    total = 0.0
    for slot, i in enumerate(codes_from):
        to_assign = scores[i]
        if queue_scores is not None:
            to_assign = jnp.concatenate([to_float32(queue_scores[slot]), to_assign])
        codes = sinkhorn_knopp(to_assign, epsilon, num_iters)[-scores[i].shape[0] :]
        subloss = sum(
            -jnp.mean(jnp.sum(codes * log_probs[v], axis=-1)) for v in range(n_crops) if v != i
        )
        total = total + subloss / (n_crops - 1)
    return total / len(codes_from)


def dino(student_logits, teacher_logits, center, student_temp=0.1, teacher_temp=0.04):
    """DINO self-distillation loss (Caron et al. 2021, "Emerging Properties in
    Self-Supervised Vision Transformers").

    Teacher targets ``t_iq = softmax((teacher_logits[iq] - center) / teacher_temp)``
    (stop-gradient'd); for every pair of teacher crop ``iq`` and student crop ``v != iq``
    the cross-entropy ``mean_b sum_k -t_iq log softmax(student_logits[v] / student_temp)``;
    the loss is the mean over those pairs. The teacher's crops are the first student crops
    (the global ones), as in facebookresearch/dino ``DINOLoss.forward``; the teacher
    temperature schedule is the caller's (pass the current value). Counterparts: lightly
    ``DINOLoss`` (which does not detach the teacher outputs and takes them first),
    solo-learn ``DINOLoss``. Update the centre with :func:`dino_center_update`.

    Args:
      student_logits: ``n_crops`` arrays ``(B, K)`` (sequence or stacked array).
      teacher_logits: the teacher's logits of the global crops, ``(B, K)`` each.
      center: ``(K,)`` or ``(1, K)`` running centre.
    """
    student_log_probs = [
        jax.nn.log_softmax(s / student_temp, axis=-1) for s in _crops(student_logits)
    ]
    center = jax.lax.stop_gradient(to_float32(center))
    total, terms = 0.0, 0
    for iq, t in enumerate(_crops(teacher_logits)):
        targets = jax.lax.stop_gradient(jax.nn.softmax((t - center) / teacher_temp, axis=-1))
        for v, log_p in enumerate(student_log_probs):
            if v != iq:
                total = total + jnp.mean(jnp.sum(-targets * log_p, axis=-1))
                terms += 1
    return total / terms


def dino_center_update(center, teacher_logits, momentum=0.9):
    """DINO's centre EMA: ``center * momentum + (1 - momentum) * mean(teacher_logits)``.

    The mean is over every teacher output of every global crop in the global batch, as
    facebookresearch/dino ``DINOLoss.update_center`` (sum, ``all_reduce``, divide by
    ``len(teacher_output) * world_size``). Pure: returns the new centre (same shape as
    ``center``), stop-gradient'd.
    """
    teacher = jnp.stack(_crops(teacher_logits))
    batch_center = jnp.mean(teacher.reshape(-1, teacher.shape[-1]), axis=0)
    new = to_float32(center) * momentum + (1.0 - momentum) * batch_center
    return jax.lax.stop_gradient(new.reshape(jnp.shape(center)))
