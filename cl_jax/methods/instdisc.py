"""Instance discrimination with a memory bank (Wu, Xiong, Yu & Lin 2018, "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination", arXiv:1805.01978).

Every training image is its own class. One augmented view per image goes through the encoder
and a linear layer to 128 dimensions, L2-normalised: ``f_i``. A memory bank ``V`` (``N x 128``,
``extra['bank']``, one row per training example, initialised with random unit vectors)
holds the last feature of every example. With ``P(i | f) = exp(v_i . f / T) / Z``:

- ``num_noise = 0``: the exact non-parametric softmax over the whole bank,
  ``loss = mean_b [log sum_j exp(v_j . f_b / T) - v_{i_b} . f_b / T]`` (the log-sum-exp by
  ``losses.logsumexp_rows``; ``block_size`` streams it over blocks of the bank for large
  ``N``). T = 0.07 (0.1 in the reference's CIFAR command).
- ``num_noise = m > 0`` (4096 for ImageNet): noise-contrastive estimation
  (``losses.nce``) with ``m`` noise rows per example drawn uniformly from the bank
  (``P_n = 1/N``) and ``Z`` a constant estimated once, on the first batch, as
  ``N * mean(exp(v . f / T))`` over the positives and noise rows (kept in
  ``extra['log_z']``), as the reference's ``NCEAverage``.

Optional proximal regularisation (paper, section 3.4): ``+ lambda |f_i - v_i|^2``
(``proximal``; 0, as in the released code; section 3.4 compares lambda from 0 to 50).
After each step the batch's rows move towards their new features,
``v_i <- normalize(m v_i + (1 - m) f_i)`` with ``m = bank_momentum = 0.5``, as the
reference's ``LinearAverage`` / ``NCEAverage`` (zhirongw/lemniscate.pytorch) do in backward.
The paper's initial bank is random unit vectors (the code draws uniform vectors of about unit
norm).

The bank needs each example's index in the training set (the loop passes ``batch['index']``
to the loss as ``index``) and ``method.num_examples``, the training set's size (the loop sets
it when it is 0).
"""

import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.losses._utils import l2_normalize
from cl_jax.methods._bank import (
    bank_size,
    checked_index,
    momentum_rows,
    noise_contrastive,
    random_unit_vectors,
)
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.models import MLP


class InstDisc(Method):
    name = "instdisc"
    min_views = 1
    inputs = ("views", "index")

    def build_network(self, encoder, num_classes):
        projector = MLP(hidden_dims=(), output_dim=self.config.proj_dim)
        return Network(encoder=encoder, projector=projector, num_classes=num_classes)

    def init_extra(self, params, batch_stats, rng):
        c = self.config
        extra = {"bank": random_unit_vectors(rng, (bank_size(c), c.proj_dim))}
        if c.num_noise:
            extra.update(log_z=jnp.zeros((), jnp.float32), has_z=jnp.zeros((), bool))
        return extra

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views, index = batch["views"], batch["index"]
        c = self.config
        index = checked_index(self, index)
        outputs, batch_stats = self.forward(params, batch_stats, views[:1])
        f = l2_normalize(outputs[0]["projection"])
        bank = extra["bank"]
        positives = bank[index]
        positive_logits = jnp.sum(f * positives, axis=-1) / c.temperature
        aux_extra = {"features": jax.lax.stop_gradient(f)}
        if c.num_noise:
            noise = jax.random.randint(rng, (f.shape[0], c.num_noise), 0, c.num_examples)
            noise_logits = jnp.einsum("bd,bkd->bk", f, bank[noise]) / c.temperature
            loss, aux_extra["log_z"] = noise_contrastive(
                positive_logits, noise_logits, extra["log_z"], extra["has_z"], c.num_examples)
        else:
            lse = losses.logsumexp_rows(f / c.temperature, bank,
                                        block_size=c.get("block_size") or None)
            loss = jnp.mean(lse - positive_logits)
        if c.proximal:
            loss = loss + c.proximal * jnp.mean(jnp.sum((f - positives) ** 2, axis=-1))
        aux_extra["index"] = index
        return loss, LossAux(metrics={}, batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 1), probe_views=1,
                             extra=aux_extra)

    def update_extra(self, extra, params, aux, step):
        bank = momentum_rows(extra["bank"], aux.extra["index"], aux.extra["features"],
                             self.config.bank_momentum)
        new = dict(extra, bank=bank)
        if self.config.num_noise:
            new.update(log_z=aux.extra["log_z"], has_z=jnp.ones((), bool))
        return new
