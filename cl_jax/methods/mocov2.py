"""MoCo v2 (He, Fan, Wu, Xie & Girshick 2020, "Momentum Contrast for Unsupervised Visual
Representation Learning", arXiv:1911.05722; Chen, Fan, Girshick & He 2020, "Improved
Baselines with Momentum Contrastive Learning", arXiv:2003.04297), with MoCHi hard-negative
mixing (Kalantidis et al. 2020, "Hard Negative Mixing for Contrastive Learning",
arXiv:2010.01028) behind ``method.mochi=True``.

Networks. The query network is the encoder and an MLP head without BatchNorm
(``Linear(2048) - ReLU - Linear(128)`` for ResNet-50, MoCo v2's head). The key network is an
extra pytree in the train state, the EMA of the query encoder and head, updated after every
optimiser step: ``key <- m key + (1 - m) query`` with ``m = m_final - (m_final - m_base)
(cos(pi k / K) + 1) / 2`` (``tau_base``, ``tau_final``): MoCo's constant ``m = 0.999`` is
``tau_base = tau_final = 0.999``; solo-learn's CIFAR recipe ramps 0.99 -> 0.999.

Loss. ``q = g(f(x_q))``, ``k = sg(g'(f'(x_k)))``, the queue holds the ``K`` most recent keys
(L2-normalised; initialised with random unit vectors as the reference does):
``L = info_nce(q, k, negatives=queue, T)``, i.e. ``-log exp(q.k/T) / (exp(q.k/T) +
sum_queue exp(q.n/T))`` averaged over the global batch (facebookresearch/moco ``MoCo``:
``l_pos``, ``l_neg``, label 0). After the step the global batch of keys is enqueued and the
oldest ``B`` dequeued (``queue_ptr`` advances by ``B`` mod ``K``; ``K`` must be a multiple
of ``B``, as in the reference). Each view is its own BatchNorm batch, as the references
forward each view separately.

Default: asymmetric, as the papers and the official code (query view 1, key view 2) and
their 67.5% / 71.1% results. ``symmetric=True`` is solo-learn's ``mocov2plus``:
``(info_nce(q1, k2, queue_2) + info_nce(q2, k1, queue_1)) / 2`` with one queue per view
(keys of view ``j`` in ``queue_j``), both updated with the batch's keys; it uses both views
as queries (twice the signal per step) and is what solo-learn's CIFAR numbers use.

Shuffling BatchNorm (MoCo section 3.3). MoCo trains on G GPUs, each with BatchNorm over its
own ``B / G`` examples; it feeds the key encoder a random permutation of the global batch, so
a query and its positive key are normalised with statistics of different sub-batches and
the model cannot use the sub-batch statistics to find its positive. Here the whole step is
one program over the global batch, so the key batch is permuted with a random permutation
(from the step's rng), split into ``G = shuffle_bn_groups`` groups of ``B / G`` consecutive
rows, the key network is ``vmap``-ed over the groups (BatchNorm statistics per group), and
the keys are un-permuted. That is exactly MoCo's key encoder with shuffle BN on G GPUs. The
query network, like every network in this library, normalises over the global batch (the
reference: per-GPU statistics of each GPU's unshuffled ``B / G`` queries), so the whole is
MoCo with SyncBN in the query encoder and shuffle BN in the key encoder. ``G = 1`` is plain
global BatchNorm for the keys (solo-learn's SyncBN setting). The key network's running
BatchNorm averages (never used: evaluation uses the query encoder) are averaged over groups.

MoCHi. For each query, its ``N`` hardest queue negatives (highest ``q.n``) are mixed into
``s`` synthetic negatives (pairs of them) and ``s'`` mixed with the query itself (weight
``beta ~ U(0, 0.5)``), see ``losses.miners.mochi_negatives``; they join that query's
logits only (``info_nce(..., query_negatives=...)``), are never enqueued and carry no
gradient. Defaults ``(N, s, s') = (1024, 1024, 128)``; no mixing during the first
``mochi_warmup_epochs`` (10), while the queue still holds keys of the random network.

i-Mix (Lee et al. 2021, arXiv:2010.08887), ``method.imix="mixup"`` or ``"cutmix"`` with
``imix_alpha`` (the paper's 1.0): each query image is mixed with another of the batch (as
``cl_jax.methods.imix``: ``max(lam, 1 - lam)``, mixup per example, CutMix per batch) and
scored by ``losses.imix_info_nce`` against the batch's clean keys followed by the queue:
kibok90/imix ``method='mocon'``, the MoCo form i-Mix mixes, whose logits are ``q [k; queue]^T
/ T`` with the own key and the mixed-in example's key as the targets (plain MoCo's ``[q.k,
q.queue]`` logits have no column for the other example's key). The keys are enqueued as
without mixing. The online probe is off (its features would be of mixed images); MoCHi and
i-Mix do not combine.
"""

import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.errors import ConfigError
from cl_jax.losses._utils import l2_normalize
from cl_jax.methods._queue import check_queue_size, enqueue, random_unit_rows
from cl_jax.methods._target import init_target, momentum_schedule, update_target
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.methods.imix import MIXES, mix_inputs
from cl_jax.models import MLP

TARGET_MODULES = ("encoder", "projector")


class MoCoV2(Method):
    name = "mocov2"

    @classmethod
    def validate(cls, config):
        check_queue_size(config.method.queue_size, config.batch_size)
        kind = config.method.get("imix", "none")
        if kind not in ("none",) + MIXES:
            raise ConfigError(f"method.imix is {kind!r}; set --config.method.imix to none, "
                              f"{' or '.join(MIXES)}.")
        if kind != "none" and config.method.mochi:
            raise ConfigError("method.imix and method.mochi do not combine; switch one off.")
        groups = config.method.shuffle_bn_groups
        if groups < 1 or config.batch_size % groups:
            raise ConfigError(
                f"method.shuffle_bn_groups={groups} must divide the global batch size "
                f"{config.batch_size}; set --config.method.shuffle_bn_groups to a divisor (the "
                "number of devices, or 1 for global BatchNorm).")

    def projector(self):
        c = self.config
        return MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim,
                   use_batch_norm=False)

    def build_network(self, encoder, num_classes):
        return Network(encoder=encoder, projector=self.projector(), num_classes=num_classes)

    def build_target_network(self, encoder):
        return Network(encoder=encoder, projector=self.projector())

    @property
    def key_views(self):
        """Views the keys come from; ``queue[i]`` holds past keys of ``key_views[i]``."""
        return (0, 1) if self.config.symmetric else (1,)

    def init_extra(self, params, batch_stats, rng):
        shape = (len(self.key_views), self.config.queue_size, self.config.proj_dim)
        return {**init_target(params, batch_stats, TARGET_MODULES),
                "queue": random_unit_rows(rng, shape), "queue_ptr": jnp.zeros((), jnp.int32)}

    def key_projections(self, target_params, target_batch_stats, x, rng):
        """L2-normalised key projections of ``x`` with shuffled per-group BatchNorm.

        Returns ``(keys, new target batch_stats)``; see the module docstring.
        """
        groups = self.config.shuffle_bn_groups
        batch = x.shape[0]
        variables = {"params": target_params, "batch_stats": target_batch_stats}

        def run(images):
            out, updates = self.target_network.apply(variables, images, train=True,
                                                     mutable=["batch_stats"])
            return out["projection"], updates["batch_stats"]

        if groups == 1:
            z, stats = run(x)
        else:
            perm = jax.random.permutation(rng, batch)
            z, stats = jax.vmap(run)(x[perm].reshape(groups, batch // groups, *x.shape[1:]))
            z = z.reshape(batch, -1)[jnp.argsort(perm)]
            stats = jax.tree.map(lambda s: jnp.mean(s, axis=0), stats)
        return jax.lax.stop_gradient(l2_normalize(z)), stats

    def mochi_active(self, step):
        warmup = round(self.config.mochi_warmup_epochs * self.steps_per_epoch)
        return step >= warmup

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views = batch["views"]
        c = self.config
        views = views[:2]
        shuffle_rng, mochi_rng, mix_rng = jax.random.split(rng, 3)
        imix = c.get("imix", "none") != "none"
        queries = [views[1 - v] for v in self.key_views]
        if imix:
            mixes = [mix_inputs(c.imix, c.imix_alpha, jax.random.fold_in(mix_rng, i), x)
                     for i, x in enumerate(queries)]
            queries = [mixed for mixed, _, _ in mixes]
        outputs, batch_stats = self.forward(params, batch_stats, queries)
        target_stats, keys, terms = extra["target_batch_stats"], [], []
        for i, v in enumerate(self.key_views):
            k, target_stats = self.key_projections(extra["target_params"], target_stats,
                                                   views[v], jax.random.fold_in(shuffle_rng, i))
            keys.append(k)
            q, queue = outputs[i]["projection"], jax.lax.stop_gradient(extra["queue"][i])
            if imix:
                _, perm, lam = mixes[i]
                loss = losses.imix_info_nce(q, k, perm, lam, temperature=c.temperature,
                                            negatives=queue)
            else:
                loss = losses.info_nce(q, k, negatives=queue, temperature=c.temperature)
            if c.mochi:
                synthetic = losses.mochi_negatives(
                    q, queue, jax.random.fold_in(mochi_rng, i), num_hard=c.mochi_num_hard,
                    num_mix=c.mochi_num_mix, num_mix_query=c.mochi_num_mix_query,
                    beta_max=c.mochi_beta_max)
                mixed = losses.info_nce(q, k, negatives=queue, temperature=c.temperature,
                                        query_negatives=synthetic)
                loss = jnp.where(self.mochi_active(step), mixed, loss)
            terms.append(loss)
        tau = momentum_schedule(step, self.total_steps, c.tau_base, c.tau_final)
        num = 0 if imix else len(outputs)
        metrics = {"tau": tau, **({"lam": mixes[0][2].mean()} if imix else {})}
        return sum(terms) / len(terms), LossAux(
            metrics=metrics, batch_stats=batch_stats,
            probe_logits=probe_logits_of(outputs, num) if num else None, probe_views=num,
            extra={"target_batch_stats": target_stats, "keys": jnp.stack(keys)})

    def update_extra(self, extra, params, aux, step):
        c = self.config
        tau = momentum_schedule(step, self.total_steps, c.tau_base, c.tau_final)
        queue, ptr = enqueue(extra["queue"], extra["queue_ptr"], aux.extra["keys"])
        return {"target_params": update_target(extra["target_params"], params, tau),
                "target_batch_stats": aux.extra["target_batch_stats"],
                "queue": queue, "queue_ptr": ptr}
