"""The method interface: a network, extra state, a loss on the views, and a post-update.

The training loop (cl_jax.state / cl_jax.train) knows nothing about any particular method.
A method is one small subclass of ``Method``:

- ``build_network(encoder, num_classes)``: the online ``Network`` (encoder + heads).
- ``init_extra(params, batch_stats, rng)``: extra state kept in the train state (an EMA
  target network, a queue, prototypes, centers, ...). Default: none.
- ``loss(params, batch_stats, extra, views, labels, rng, step)``: the objective on a tuple of
  augmented views, returning ``(loss, LossAux)``. A method with ``needs_index`` also gets
  ``index=``, each example's row in the training set (for memory banks).
- ``update_extra(extra, params, aux, step)``: runs inside the jitted step after the optimizer
  update (EMA with ``optax.incremental_update``, queue push, ...). Default: unchanged.
"""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp


class Network(nn.Module):
    """Encoder, optional projector and predictor, and the online linear probe.

    The probe is a linear classifier on stop-gradient features, so it never shapes the
    representation; ``num_classes=0`` leaves it out.
    """

    encoder: nn.Module
    projector: nn.Module | None = None
    predictor: nn.Module | None = None
    num_classes: int = 0

    @nn.compact
    def __call__(self, x, train: bool = True):
        features = self.encoder(x, train)
        out = {"features": features}
        if self.projector is not None:
            out["projection"] = self.projector(features, train)
        if self.predictor is not None:
            out["prediction"] = self.predictor(out["projection"], train)
        if self.num_classes:
            probe = nn.Dense(self.num_classes, name="probe")
            out["probe_logits"] = probe(jax.lax.stop_gradient(features))
        return out

    def features(self, x):
        """Encoder output in inference mode (BatchNorm running averages): for evaluation."""
        return self.encoder(x, train=False)


@flax.struct.dataclass
class LossAux:
    """What a method's loss hands back besides the scalar.

    metrics: scalars to log. batch_stats: the online network's updated BatchNorm statistics.
    probe_logits / probe_views: online-probe logits on the first ``probe_views`` views
    (concatenated view-major), or None. extra: whatever ``update_extra`` needs.
    """

    metrics: dict
    batch_stats: Any
    probe_logits: Any = None
    probe_views: int = flax.struct.field(pytree_node=False, default=0)
    extra: Any = None


def views_by_resolution(views):
    """Groups view indices by image shape, in order of first appearance: [(shape, [i, ...])]."""
    groups = {}
    for i, view in enumerate(views):
        groups.setdefault(view.shape[1:], []).append(i)
    return list(groups.items())


def apply_to_views(network, params, batch_stats, views, train=True):
    """Runs ``network`` on every view; views of one resolution share one call.

    Sharing a call means BatchNorm statistics are computed over all views of that resolution
    (the SimCLR reference concatenates its two views; SwAV and DINO concatenate crops of one
    size). Returns (list of per-view output dicts, new batch_stats).
    """
    outputs = [None] * len(views)
    for _, indices in views_by_resolution(views):
        x = jnp.concatenate([views[i] for i in indices], axis=0)
        variables = {"params": params, "batch_stats": batch_stats}
        if train:
            out, updates = network.apply(variables, x, train=True, mutable=["batch_stats"])
            batch_stats = updates["batch_stats"]
        else:
            out = network.apply(variables, x, train=False)
        size = views[indices[0]].shape[0]
        for j, i in enumerate(indices):
            outputs[i] = jax.tree.map(lambda a, lo=j * size, hi=(j + 1) * size: a[lo:hi], out)
    return outputs, batch_stats


def probe_logits_of(outputs, num_views):
    """Concatenated online-probe logits of the first ``num_views`` views, or None."""
    if "probe_logits" not in outputs[0]:
        return None
    return jnp.concatenate([o["probe_logits"] for o in outputs[:num_views]], axis=0)


class Method:
    """Base class. ``config`` is the ``config.method`` ConfigDict of the run."""

    name = "base"
    #: Whether the loss needs labels (SupCon); the loop then refuses unlabelled data.
    needs_labels = False
    #: Views the method uses; the data pipeline must provide at least this many.
    min_views = 2
    #: Whether the loss uses multi-crop's local views (``augment.num_local_views``).
    uses_local_views = False
    #: Whether the loss takes ``index=``, the examples' rows in the training set (a memory
    #: bank per example); the loop then needs a random-access split and sets
    #: ``method.num_examples`` to its size.
    needs_index = False

    def __init__(self, config, encoder, num_classes=0, total_steps=1, steps_per_epoch=1.0):
        self.config = config
        self.total_steps = max(int(total_steps), 1)
        self.steps_per_epoch = max(float(steps_per_epoch), 1.0)
        self.network = self.build_network(encoder, num_classes)

    def build_network(self, encoder, num_classes) -> Network:
        raise NotImplementedError

    def init_extra(self, params, batch_stats, rng):
        return {}

    def loss(self, params, batch_stats, extra, views, labels, rng, step):
        raise NotImplementedError

    def update_extra(self, extra, params, aux, step):
        return extra

    def forward(self, params, batch_stats, views, train=True):
        return apply_to_views(self.network, params, batch_stats, views, train)
