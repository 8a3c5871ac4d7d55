"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations"): encoder + MLP projector, a contrastive loss over the whole global batch.

The two views share one forward pass (BatchNorm statistics over both), as the reference
(google-research/simclr) concatenates them: ``view_grouping = "per_resolution"``.

Under ``jax.jit`` with the batch sharded over the mesh, the loss sees the global batch, so
every view is contrasted against the views of all devices (the paper's "global" setting,
what the reference gets from ``tpu_cross_replica_concat``).

``method.loss`` picks the contrastive loss on the two batches of projections (each is a
function of ``cl_jax.losses``, whose docstring gives the formula and the reference code):

- ``"nt_xent"`` (default): SimCLR's NT-Xent, :func:`cl_jax.losses.nt_xent`. The only one
  that takes ``block_size`` (streams the similarity matrix over blocks of keys).
- ``"dcl"``: decoupled contrastive loss (Yeh et al. 2022, "Decoupled Contrastive Learning",
  arXiv:2110.06848): NT-Xent without the positive in the denominator,
  :func:`cl_jax.losses.dcl`. Its gains over NT-Xent are largest at small batches (256 on
  ImageNet, ``configs/dcl.py``); lightly's ``DCLLoss`` defaults to temperature 0.1.
- ``"dclw"``: DCL with the positive term weighted by a negative von Mises-Fisher weight of
  concentration ``dclw_sigma`` (0.5, lightly's ``DCLWLoss`` default),
  :func:`cl_jax.losses.dclw`.
- ``"debiased"``: debiased contrastive loss (Chuang et al. 2020, "Debiased Contrastive
  Learning", arXiv:2007.00224) with class prior ``tau_plus`` (0.1),
  :func:`cl_jax.losses.debiased_nt_xent`. The reference (chingyaoc/DCL) trains with
  temperature 0.5.
- ``"hard_negative"``: HCL (Robinson et al. 2021, "Contrastive Learning with Hard Negative
  Samples", arXiv:2010.04592), debiased with negatives importance-weighted by
  ``exp(beta * cos / T)``, ``tau_plus`` (0.1) and ``beta`` (1.0),
  :func:`cl_jax.losses.hard_negative_nt_xent`. The reference (joshr17/HCL) trains with
  temperature 0.5.

All take ``method.temperature``; set it explicitly when switching to a loss whose paper
uses another one.

``method.loss_scale`` (default 1.0) multiplies whichever loss is chosen. The losses are means
over the 2N views (solo-learn's ``simclr_loss_func`` convention); google-research/simclr's
``add_contrastive_loss`` returns ``mean(loss_a + loss_b)``, the sum of the two directions'
means, i.e. ``2 x nt_xent``. With LARS the factor matters: the trust ratio
``eta |w| / |g + wd w|`` cancels the gradient's scale on weight matrices but not its balance
with the decay (a gradient twice as large halves the relative weight decay), and biases and
BatchNorm parameters, outside the trust ratio, step by ``lr * g`` (twice as far). The
``imagenet`` presets of ``configs/simclr.py`` and ``configs/dcl.py`` set 2.0, so that the
paper's learning rate and weight decay mean what they meant there (docs/recipes.md).

GradCache (``config.grad_cache_chunk=K``, ``cl_jax.grad_cache``): both views of K examples are
embedded per chunk with one chunk's activations kept; BatchNorm then normalises each chunk's
2K views by their own statistics (ghost batches), so the gradient is that of ghost-batch
normalisation with K examples, not of BatchNorm over the whole batch (equal with one chunk).
"""

from cl_jax import grad_cache, losses
from cl_jax.errors import ConfigError
from cl_jax.methods.base import LossAux, Method, Network, probe_logits_of
from cl_jax.models import MLP

LOSSES = ("nt_xent", "dcl", "dclw", "debiased", "hard_negative")


def check_loss_config(config):
    """One clear error for an unknown ``loss`` or a ``block_size`` it does not support."""
    name = config.get("loss", "nt_xent")
    if name not in LOSSES:
        raise ConfigError(f"Unknown method.loss {name!r}; choose one of {', '.join(LOSSES)}.")
    if name != "nt_xent" and config.get("block_size"):
        raise ConfigError(f"method.block_size applies only to method.loss='nt_xent', not "
                          f"{name!r}; set --config.method.block_size=0.")


def contrastive_loss(config, z1, z2):
    """``config.loss_scale`` times the loss ``config.loss`` names on two (N, D) batches of
    projections."""
    name, t = config.get("loss", "nt_xent"), config.temperature
    if name == "nt_xent":
        loss = losses.nt_xent(z1, z2, temperature=t, block_size=config.get("block_size") or None)
    elif name == "dcl":
        loss = losses.dcl(z1, z2, temperature=t)
    elif name == "dclw":
        loss = losses.dclw(z1, z2, temperature=t, sigma=config.dclw_sigma)
    elif name == "debiased":
        loss = losses.debiased_nt_xent(z1, z2, temperature=t, tau_plus=config.tau_plus)
    else:
        loss = losses.hard_negative_nt_xent(z1, z2, temperature=t, tau_plus=config.tau_plus,
                                            beta=config.beta)
    return config.get("loss_scale", 1.0) * loss


class SimCLR(Method):
    name = "simclr"
    view_grouping = "per_resolution"
    supports_grad_cache = True

    def __init__(self, config, *args, **kwargs):
        check_loss_config(config)
        super().__init__(config, *args, **kwargs)

    def build_network(self, encoder, num_classes):
        c = self.config
        projector = MLP(hidden_dims=tuple(c.proj_hidden_dims), output_dim=c.proj_dim)
        return Network(encoder=encoder, projector=projector, num_classes=num_classes)

    def loss(self, params, batch_stats, extra, batch, rng, step):
        views = tuple(batch["views"][:2])
        if self.grad_cache_chunk:  # both views of K examples per chunk, one chunk kept
            forward = lambda p, stats, v, r: self.forward(p, stats, v)
            outputs, batch_stats = grad_cache.cached_embed(
                forward, self.grad_cache_chunk, has_state=True)(params, batch_stats, views,
                                                                None)
        else:
            outputs, batch_stats = self.forward(params, batch_stats, views)
        z1, z2 = outputs[0]["projection"], outputs[1]["projection"]
        loss = contrastive_loss(self.config, z1, z2)
        return loss, LossAux(metrics={}, batch_stats=batch_stats,
                             probe_logits=probe_logits_of(outputs, 2), probe_views=2)
