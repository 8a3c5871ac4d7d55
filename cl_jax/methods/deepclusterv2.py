"""DeepCluster-v2 (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting
Cluster Assignments", arXiv:2006.09882, appendix; facebookresearch/swav
``main_deepclusterv2.py``), with multi-crop.

Every crop goes through the encoder and the projector (2048-128); ``z`` is the L2-normalised
projection. A memory bank (``extra['bank']``, ``(len(crops_for_assign), N, 128)``) holds the
last ``z`` of every training example's global crops, written after each step at the batch's
example indices. At the first step of every epoch (inside the jitted step, a ``lax.cond``)
each of the ``H`` heads (3 x 3000 prototypes for ImageNet) runs spherical k-means on the bank
of crop ``h % len(crops_for_assign)``: ``K`` centroids drawn at random from the filled bank
rows, then ``kmeans_iters`` (10) rounds of "assign every row to its most similar centroid;
each non-empty centroid becomes the normalised mean of its rows" and a last assignment.
The centroids become the head's prototypes ``C_h`` (``extra['centroids']``) and the final
assignments the pseudo-labels of the whole epoch (``extra['assignments']``, ``(H, N)``).
The loss is
``1/H sum_h CE(z_v C_h^T / T, assignments_h[index])`` averaged over every crop ``v`` and
example, ``T = 0.1``.

As in the reference, the prototypes are never trained (every released script sets
``freeze_prototypes_niters`` beyond the run's length): they are the centroids, so they live
in ``extra``, not in the parameters. The reference fills the bank before training with a
separate pass over the data (``init_memory``); here, as solo-learn's ``DeepClusterV2``, the
first epoch is that pass: the bank fills while the assignments are still unknown (-1, the
reference's ignored ``-100``) and the loss is 0, and clustering starts at epoch 1. Examples
missing from the bank at a clustering (none, for a random-access split) keep the label -1
and are left out of the loss.

Needs each example's index in the training set, ``batch['index']``, passed to the loss as
``index``, and ``method.num_examples``, the training set's size. The k-means assignment step
works on ``kmeans_block_size`` bank rows at a time, so it never holds the ``N x K`` scores.
Crops of one resolution share one forward pass (``view_grouping = "per_resolution"``), as the
reference's multi-crop forward.
"""

import jax
import jax.numpy as jnp
import optax

from cl_jax.errors import ConfigError
from cl_jax.losses._utils import l2_normalize
from cl_jax.methods._bank import bank_size, checked_index
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.models import MLP


def nearest_centroid(embeddings, centroids, block_size):
    """``argmax_k e . c_k`` for every row of ``embeddings``, ``block_size`` rows at a time."""
    best = lambda row: jnp.argmax(centroids @ row).astype(jnp.int32)
    return jax.lax.map(best, embeddings, batch_size=min(block_size, embeddings.shape[0]))


def spherical_kmeans(embeddings, valid, centroids, num_iters, block_size):
    """The reference's ``cluster_memory`` k-means on the rows of ``embeddings`` where ``valid``.

    From ``centroids`` (K x D), ``num_iters`` times: assign each valid row to its most similar
    centroid, replace every centroid that got rows by the mean of its rows, L2-normalise all.
    Returns (centroids, assignments of the final centroids, -1 for invalid rows).
    """
    k = centroids.shape[0]
    weights = valid.astype(jnp.float32)

    def step(_, centroids):
        assignments = nearest_centroid(embeddings, centroids, block_size)
        sums = jax.ops.segment_sum(embeddings * weights[:, None], assignments, k)
        counts = jax.ops.segment_sum(weights, assignments, k)
        means = sums / jnp.maximum(counts, 1.0)[:, None]
        return l2_normalize(jnp.where(counts[:, None] > 0, means, centroids))

    centroids = jax.lax.fori_loop(0, num_iters, step, centroids)
    assignments = nearest_centroid(embeddings, centroids, block_size)
    return centroids, jnp.where(valid, assignments, -1)


class DeepClusterV2(Method):
    name = "deepclusterv2"
    uses_local_views = True
    inputs = ("views", "index")
    view_grouping = "per_resolution"

    @classmethod
    def validate(cls, config):
        c = config.method
        for k in c.num_prototypes:
            if 0 < c.num_examples < k:
                raise ConfigError(
                    f"method.num_prototypes has {k} clusters, more than the {c.num_examples} "
                    "training examples k-means can assign; lower --config.method.num_prototypes.")

    def build_network(self, encoder, num_classes):
        c = self.config
        projector = MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim)
        return Network(encoder=encoder, projector=projector, num_classes=num_classes)

    def init_extra(self, params, batch_stats, rng):
        c = self.config
        bank_size(c)
        heads = len(c.num_prototypes)
        return {"bank": jnp.zeros((len(c.crops_for_assign), c.num_examples, c.proj_dim)),
                "centroids": tuple(jnp.zeros((k, c.proj_dim)) for k in c.num_prototypes),
                "assignments": -jnp.ones((heads, c.num_examples), jnp.int32)}

    def epoch_of(self, step):
        return jnp.floor(step / self.steps_per_epoch)

    def cluster(self, bank, rng):
        """k-means for every head on its crop's bank: (centroids tuple, (H, N) assignments)."""
        c = self.config
        bank = jnp.asarray(bank)
        centroids, assignments = [], []
        for h, k in enumerate(c.num_prototypes):
            embeddings = bank[h % bank.shape[0]]
            valid = jnp.sum(embeddings * embeddings, axis=-1) > 0
            draw = jax.random.uniform(jax.random.fold_in(rng, h), valid.shape)
            _, rows = jax.lax.top_k(jnp.where(valid, draw, -1.0), k)
            head_centroids, head_assignments = spherical_kmeans(
                embeddings, valid, embeddings[rows], c.kmeans_iters, c.kmeans_block_size)
            centroids.append(head_centroids)
            assignments.append(head_assignments)
        return tuple(centroids), jnp.stack(assignments)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views, index = batch["views"], batch["index"]
        c = self.config
        index = checked_index(self, index)
        new_epoch = (step > 0) & (self.epoch_of(step) > self.epoch_of(step - 1))
        centroids, assignments = jax.lax.cond(
            new_epoch, lambda: self.cluster(extra["bank"], rng),
            lambda: (extra["centroids"], extra["assignments"]))
        outputs, batch_stats = self.forward(params, batch_stats, views)
        z = [l2_normalize(o["projection"]) for o in outputs]
        total = 0.0
        for h, prototypes in enumerate(centroids):
            targets = jnp.tile(assignments[h][index], len(views))
            logits = jnp.concatenate(z) @ prototypes.T / c.temperature
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(targets, 0))
            known = targets >= 0
            total = total + jnp.sum(ce * known) / jnp.maximum(jnp.sum(known), 1)
        loss = total / len(centroids)
        embeddings = jnp.stack([z[i] for i in c.crops_for_assign])
        return loss, LossAux(
            metrics={"clustered": new_epoch.astype(jnp.float32)}, batch_stats=batch_stats,
            probe_logits=probe_logits_of(outputs, 2), probe_views=2,
            extra={"embeddings": jax.lax.stop_gradient(embeddings), "index": index,
                   "centroids": centroids, "assignments": assignments})

    def update_extra(self, extra, params, aux, step):
        """Writes the batch's global-crop embeddings to the bank; keeps this step's clusters."""
        bank = extra["bank"].at[:, aux.extra["index"]].set(aux.extra["embeddings"])
        return {"bank": bank, "centroids": aux.extra["centroids"],
                "assignments": aux.extra["assignments"]}
