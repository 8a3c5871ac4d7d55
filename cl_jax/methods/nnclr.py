"""NNCLR (Dwibedi, Aytar, Tompson, Sermanet & Zisserman 2021, "With a Little Help from My
Friends: Nearest-Neighbor Contrastive Learning of Visual Representations",
arXiv:2104.14548).

Network: encoder, projector (3 layers, BatchNorm after every layer including the output:
``proj_hidden_dims`` = (2048, 2048), ``proj_dim`` = 256) and predictor (2 layers, hidden 4096,
no output BatchNorm). The support set ``Q`` is extra state: ``support_size`` L2-normalised
projections (98,304 for ImageNet; initialised with random unit vectors), their labels
(-1 = unknown, only for the ``nn_acc`` metric) and a pointer.

Loss. With ``z_j = proj(f(x_j))``, ``p_j = pred(z_j)`` and ``NN(z) = argmax_{s in Q}
cos(z, s)`` (the support-set entry itself, which carries no gradient):
``L = info_nce(NN(z1), p2, T) / 2 + info_nce(NN(z2), p1, T) / 2``, where
``info_nce(a, b)`` is the cross-entropy of ``softmax_j(cos(a_i, b_j) / T)`` with label ``i``
over the global batch: the nearest neighbour of one view's projection is the anchor, the
other view's prediction its positive, the other examples' predictions the negatives. This
is the paper's pseudocode (algorithm 1, ``L(NN1, p2) / 2 + L(NN2, p1) / 2``) and solo-learn's
``nnclr.py`` (``nnclr_loss_func(nn1, p2) / 2 + nnclr_loss_func(nn2, p1) / 2`` with the
predictions gathered over devices; here the global batch is one array). T = 0.1 (paper;
solo-learn's CIFAR recipe uses 0.2). Each view is its own BatchNorm batch, as solo-learn
forwards the views separately.

After the optimiser step, the global batch of the first view's normalised projections
``z1`` (stop-gradient) and its labels are enqueued, the oldest dequeued (FIFO;
``support_size`` must be a multiple of the global batch). ``nn_acc`` is solo-learn's metric:
the fraction of labelled examples whose nearest neighbour of ``z1`` has their label.
"""

import jax
import jax.numpy as jnp

from cl_jax import losses
from cl_jax.losses._utils import l2_normalize
from cl_jax.methods._queue import check_queue_size, enqueue, random_unit_rows
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.models import MLP


def nearest_neighbours(z, support):
    """For each row of ``z``, the index and the row of ``support`` with the highest cosine
    similarity (``support`` rows are unit vectors)."""
    idx = jnp.argmax(l2_normalize(z) @ support.T, axis=1)
    return idx, support[idx]


class NNCLR(Method):
    name = "nnclr"
    inputs = ("views", "label")  # the labels only for the logged nearest-neighbour accuracy

    @classmethod
    def validate(cls, config):
        check_queue_size(config.method.support_size, config.batch_size, "method.support_size")

    def build_network(self, encoder, num_classes):
        c = self.config
        projector = MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim,
                        output_norm=True)
        predictor = MLP(hidden_dims=tuple(c.pred_hidden_dims), output_dim=c.proj_dim)
        return Network(encoder=encoder, projector=projector, predictor=predictor,
                       num_classes=num_classes)

    def init_extra(self, params, batch_stats, rng):
        size = self.config.support_size
        return {"support_set": random_unit_rows(rng, (size, self.config.proj_dim)),
                "support_labels": jnp.full((size,), -1, jnp.int32),
                "support_ptr": jnp.zeros((), jnp.int32)}

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views = batch["views"]
        c = self.config
        labels = batch["label"]
        outputs, batch_stats = self.forward(params, batch_stats, views[:2])
        z1, z2 = (jax.lax.stop_gradient(o["projection"]) for o in outputs)
        p1, p2 = outputs[0]["prediction"], outputs[1]["prediction"]
        support = jax.lax.stop_gradient(extra["support_set"])
        idx1, nn1 = nearest_neighbours(z1, support)
        _, nn2 = nearest_neighbours(z2, support)
        t = c.temperature
        loss = (losses.info_nce(nn1, p2, temperature=t)
                + losses.info_nce(nn2, p1, temperature=t)) / 2
        known = labels >= 0
        hits = (extra["support_labels"][idx1] == labels) & known
        nn_acc = jnp.sum(hits) / jnp.maximum(jnp.sum(known), 1)
        return loss, LossAux(metrics={"nn_acc": nn_acc}, batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 2), probe_views=2,
                             extra={"z1": l2_normalize(z1), "labels": labels})

    def update_extra(self, extra, params, aux, step):
        support, ptr = enqueue(extra["support_set"], extra["support_ptr"], aux.extra["z1"])
        labels, _ = enqueue(extra["support_labels"][:, None], extra["support_ptr"],
                            aux.extra["labels"][:, None])
        return {"support_set": support, "support_labels": labels[:, 0], "support_ptr": ptr}
