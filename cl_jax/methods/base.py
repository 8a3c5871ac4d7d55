"""The method interface: networks, extra state, a loss on a batch, and what follows the update.

The training loop (cl_jax.state / cl_jax.train) knows nothing about any particular method or
modality. A batch is a dict of named arrays (``views``: a tuple of image views, ``tokens``,
``label``, ``index``, ...); a method declares in ``inputs`` the fields its loss reads and gets
exactly those. A method is one small subclass of ``Method``:

- ``build_network(encoder, num_classes)``: the online network (encoder + heads), trained by
  the optimiser; ``build_target_network(encoder)``: a second network whose parameters live in
  the extra state (an EMA target or teacher), or None.
- ``validate(config)`` (classmethod): checks on the run config that need no data and no
  compilation, raising ``ConfigError``; the loop calls it before anything is loaded or written.
- ``sample_inputs(config)`` / ``init_variables(rng, sample)``: what the network is initialised
  on. Default: one image view of the run's first view size.
- ``init_extra(params, batch_stats, rng)``: extra state kept in the train state (an EMA target
  network, a queue, prototypes, centers, ...). Default: none.
- ``loss(params, batch_stats, extra, batch, rng, step)``: the objective on the batch fields of
  ``inputs``, returning ``(loss, LossAux)``.
- ``update_extra(extra, params, aux, step)``: runs inside the jitted step after the optimizer
  update (EMA with ``optax.incremental_update``, queue push, ...). Default: unchanged.
- ``constrain_params(params)``: runs after the optimizer update on the new parameters (CLIP's
  clamp of its logit scale). Default: unchanged.
- ``image_features(variables, images)``: what the image evaluators embed. Default: the
  encoder in inference mode; ``finetune_features`` the same in training mode (fine-tuning).

BatchNorm grouping. ``view_grouping`` declares which views share one forward pass, and so one
set of BatchNorm batch statistics: ``"per_view"`` (every view its own batch, as the BYOL,
SimSiam, Barlow Twins, VICReg and MoCo references and solo-learn forward each view) or
``"per_resolution"`` (all views of one resolution concatenated, as google-research/simclr,
SupContrast, and the multi-crop wrappers of SwAV and DINO do). Each method sets it to its
reference's and says so in its docstring.
"""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from cl_jax.views import view_augments

VIEW_GROUPINGS = ("per_view", "per_resolution")


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

    def features(self, x, train: bool = False):
        """Encoder output, in inference mode (BatchNorm running averages) for evaluation,
        in training mode for fine-tuning."""
        return self.encoder(x, train)


@flax.struct.dataclass
class LossAux:
    """What a method's loss hands back besides the scalar.

    metrics: scalars to log. batch_stats: the online network's updated BatchNorm statistics.
    probe_logits / probe_views: online-probe logits on the first ``probe_views`` views
    (concatenated view-major), or None. probe_mix: ``(perm, lam)`` when those views were
    mixed (``cl_jax.mixing``): the probe then learns the mixed targets. extra: whatever
    ``update_extra`` needs.
    """

    metrics: dict
    batch_stats: Any
    probe_logits: Any = None
    probe_views: int = flax.struct.field(pytree_node=False, default=0)
    extra: Any = None
    probe_mix: Any = None


def view_groups(views, grouping):
    """Indices of the views that share a forward pass, in order of first appearance.

    ``"per_view"``: ``[[0], [1], ...]``; ``"per_resolution"``: views of one shape together.
    """
    if grouping == "per_view":
        return [[i] for i in range(len(views))]
    if grouping != "per_resolution":
        raise ValueError(f"view grouping must be one of {VIEW_GROUPINGS}, got {grouping!r}")
    groups = {}
    for i, view in enumerate(views):
        groups.setdefault(view.shape[1:], []).append(i)
    return list(groups.values())


def apply_to_views(network, params, batch_stats, views, train=True, grouping="per_resolution",
                   rng=None):
    """Runs ``network`` on every view, one call per group of ``view_groups(views, grouping)``.

    Views in one call share BatchNorm batch statistics. ``rng`` feeds the ``dropout`` rng
    collection (a different key per call). Returns (list of per-view outputs, batch_stats).
    """
    outputs = [None] * len(views)
    for g, indices in enumerate(view_groups(views, grouping)):
        x = jnp.concatenate([views[i] for i in indices], axis=0)
        variables = {"params": params, "batch_stats": batch_stats}
        rngs = {} if rng is None else {"rngs": {"dropout": jax.random.fold_in(rng, g)}}
        if train:
            out, updates = network.apply(variables, x, train=True, mutable=["batch_stats"],
                                         **rngs)
            batch_stats = updates["batch_stats"]
        else:
            out = network.apply(variables, x, train=False, **rngs)
        size = views[indices[0]].shape[0]
        for j, i in enumerate(indices):
            outputs[i] = jax.tree.map(lambda a, lo=j * size, hi=(j + 1) * size: a[lo:hi], out)
    return outputs, batch_stats


def probe_logits_of(outputs, num_views):
    """Concatenated online-probe logits of the first ``num_views`` views, or None."""
    if "probe_logits" not in outputs[0]:
        return None
    return jnp.concatenate([o["probe_logits"] for o in outputs[:num_views]], axis=0)


def frozen_while(tree, condition):
    """``tree`` unchanged in value, with zero gradient while ``condition`` (a traced bool)."""
    return jax.tree.map(lambda p: jnp.where(condition, jax.lax.stop_gradient(p), p), tree)


class Method:
    """Base class. ``config`` is the ``config.method`` ConfigDict of the run."""

    name = "base"
    #: The batch fields ``loss`` reads (``views``, ``label``, ``index``, ``tokens``, ...).
    #: ``index`` is each example's row in the training set (a memory bank per example): the
    #: loop then needs a split with indices and sets ``method.num_examples`` to its size.
    inputs = ("views",)
    #: Whether the loss needs labels (SupCon); the loop then refuses unlabelled data.
    needs_labels = False
    #: Image views the method uses; the data pipeline must provide at least this many.
    min_views = 2
    #: Whether the loss uses multi-crop's local views (``augment.num_local_views``).
    uses_local_views = False
    #: Which views share BatchNorm statistics (see the module docstring).
    view_grouping = "per_view"
    #: The run's device mesh, set by the loop (for losses written with ``shard_map``).
    mesh = None
    #: Whether the loss embeds through ``cl_jax.grad_cache`` when ``grad_cache_chunk`` (the
    #: run's ``config.grad_cache_chunk``, set by the loop) is > 0.
    supports_grad_cache = False
    grad_cache_chunk = 0

    def __init__(self, config, encoder, num_classes=0, total_steps=1, steps_per_epoch=1.0):
        self.config = config
        self.total_steps = max(int(total_steps), 1)
        self.steps_per_epoch = max(float(steps_per_epoch), 1.0)
        self.network = self.build_network(encoder, num_classes)
        self.target_network = self.build_target_network(encoder)

    @classmethod
    def validate(cls, config):
        """Raises ``ConfigError`` for a run config this method cannot train on."""

    def build_network(self, encoder, num_classes) -> nn.Module:
        raise NotImplementedError

    def build_target_network(self, encoder) -> nn.Module | None:
        return None

    def sample_inputs(self, config):
        """A small batch of the network's inputs for initialisation (shapes only matter)."""
        size = view_augments(config.augment)[0].size
        return {"views": (jnp.zeros((2, size, size, config.data.channels), jnp.float32),)}

    def init_variables(self, rng, sample):
        return self.network.init(rng, sample["views"][0], train=True)

    def init_extra(self, params, batch_stats, rng):
        return {}

    def loss(self, params, batch_stats, extra, batch, rng, step):
        raise NotImplementedError

    def update_extra(self, extra, params, aux, step):
        return extra

    def constrain_params(self, params):
        return params

    def forward(self, params, batch_stats, views, train=True, rng=None):
        """The online network on ``views``, grouped as ``view_grouping`` declares."""
        return apply_to_views(self.network, params, batch_stats, views, train,
                              self.view_grouping, rng)

    def forward_target(self, params, batch_stats, views, train=True):
        """The target network on ``views``, grouped as the online network's."""
        return apply_to_views(self.target_network, params, batch_stats, views, train,
                              self.view_grouping)

    def image_features(self, variables, images):
        """Features of ``images`` for the image evaluators (kNN, linear, few-label)."""
        return self.network.apply(variables, images, method=self.network.features)

    def finetune_features(self, variables, images):
        """``image_features`` in training mode, for fine-tuning the encoder: (features, the
        updated ``batch_stats``). BatchNorm normalises with the batch's statistics."""
        features, updated = self.network.apply(variables, images, train=True,
                                                method=self.network.features,
                                                mutable=["batch_stats"])
        return features, updated.get("batch_stats", variables.get("batch_stats", {}))
