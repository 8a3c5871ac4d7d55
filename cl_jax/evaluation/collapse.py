"""Collapse monitors on a batch of embeddings ``z`` (N, D): cheap, label-free numbers that fall
when a self-supervised run collapses (every input mapped to one point) or loses dimensions.

* ``embedding_std``: SimSiam's monitor (Chen & He 2021, "Exploring Simple Siamese
  Representation Learning", CVPR 2021, arXiv:2011.10566, section 4.1 and figure 2).
* ``rankme``: the effective rank of the embeddings (Garrido, Balestriero, Najman & LeCun 2023,
  "RankMe: Assessing the downstream performance of pretrained self-supervised representations
  by their rank", ICML 2023, arXiv:2210.02885).
* ``alignment`` and ``uniformity`` (Wang & Isola 2020, "Understanding Contrastive
  Representation Learning through Alignment and Uniformity on the Hypersphere", ICML 2020,
  arXiv:2005.10242).

All are jittable and computed in float32 (bfloat16 input is upcast first); each returns a
float32 scalar. ``collapse_metrics`` bundles them, ``collapse_warning`` reads the bundle on the
host.
"""

import math

import jax
import jax.numpy as jnp

from cl_jax.losses._utils import check_pair, l2_normalize, squared_distances, to_float32


def embedding_std(z):
    """``mean_d std_n(z_n / |z_n|)[d]``: the per-dimension standard deviation over the batch of
    the L2-normalised embeddings, averaged over the D dimensions (SimSiam, section 4.1).

    About ``1 / sqrt(D)`` for embeddings spread over the sphere (exactly that for the 2D rows
    ``+-e_k``), 0 when all rows are one direction. The population std (``ddof = 0``), as
    ``cl_jax.methods.simsiam.normalized_std`` logs it; lightly ``std_of_l2_normalized`` (and
    ``torch.std``) is the unbiased one, larger by ``sqrt(N / (N - 1))``.
    """
    return jnp.mean(jnp.std(l2_normalize(z), axis=0))


def rankme(z, eps=1e-7):
    """RankMe, the paper's eq. 1: ``exp(-sum_k p_k log p_k)`` with
    ``p_k = sigma_k(z) / |sigma(z)|_1 + eps`` over the ``min(N, D)`` singular values of the
    (unnormalised) embedding matrix; ``eps`` is added after the normalisation, as in the paper
    (1e-7, its float32 value).

    Between about 1 (all rows on one line) and ``min(N, D)`` (all singular values equal);
    an all-zero ``z`` gives about 1 (every ``p_k = eps``). The paper estimates it on 25,600
    embeddings; a single batch gives a lower, noisier estimate when N is not much larger than
    D. Singular values from an SVD of ``z`` (not from the D x D Gram matrix, whose float32
    eigenvalues would blur the small ones).
    """
    sigma = jnp.linalg.svd(to_float32(z), compute_uv=False)
    p = sigma / jnp.maximum(jnp.sum(sigma), jnp.finfo(jnp.float32).tiny) + eps
    return jnp.exp(-jnp.sum(p * jnp.log(p)))


def alignment(z1, z2, alpha=2):
    """``mean_i |f(x_i) - f(y_i)|^alpha`` over the N positive pairs (rows of ``z1``, ``z2``),
    on L2-normalised embeddings (Wang & Isola 2020, their ``align_loss``:
    ``(x - y).norm(p=2, dim=1).pow(alpha).mean()``). 0 for identical views, at most
    ``2 ** alpha``."""
    check_pair(z1, z2)
    diff = l2_normalize(z1) - l2_normalize(z2)
    return jnp.mean(jnp.sum(diff * diff, axis=1) ** (alpha / 2))


def uniformity(z, t=2):
    """``log mean_{i < j} exp(-t |f(x_i) - f(x_j)|^2)`` over the ``N (N - 1) / 2`` distinct pairs
    of L2-normalised rows (Wang & Isola 2020, their ``uniform_loss``:
    ``torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()``), computed as a log-sum-exp.

    0 when all rows coincide (collapse), negative otherwise, lower = more uniform; needs
    N >= 2."""
    x = l2_normalize(z)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"uniformity needs at least 2 embeddings, got shape {x.shape}")
    index = jnp.arange(n)
    upper = index[:, None] < index[None, :]
    log_kernel = jnp.where(upper, -t * squared_distances(x, x), -jnp.inf)
    return jax.nn.logsumexp(log_kernel) - math.log(n * (n - 1) / 2)


def collapse_metrics(z, z2=None):
    """``{"embedding_std", "rankme", "uniformity"}`` of ``z`` (N, D), plus ``"alignment"`` of
    ``(z, z2)`` when a second view ``z2`` (N, D) is given; jittable (``z2`` is ``None`` or an
    array, which fixes the structure of the output)."""
    metrics = {"embedding_std": embedding_std(z), "rankme": rankme(z), "uniformity": uniformity(z)}
    if z2 is not None:
        metrics["alignment"] = alignment(z, z2)
    return metrics


def collapse_warning(metrics, dim, threshold=0.2):
    """A one-line warning if ``metrics["embedding_std"]`` (``collapse_metrics``' output, on the
    host) has fallen towards collapse, else ``None``.

    Rule: warn when ``embedding_std < threshold / sqrt(dim)``, i.e. below ``threshold`` (20% by
    default) of the healthy value ``1 / sqrt(D)`` of embeddings spread over the sphere
    (SimSiam figure 2: healthy runs stay near ``1 / sqrt(D)``, collapsing ones go to 0), or
    when it is not finite. ``dim``: D, the embeddings' dimension.
    """
    std = float(metrics["embedding_std"])
    healthy = 1.0 / math.sqrt(dim)
    if std >= threshold * healthy:  # False for NaN
        return None
    details = "".join(
        f", {name} {float(metrics[name]):.4g}" for name in ("rankme", "uniformity", "alignment")
        if name in metrics
    )
    return (f"embeddings are collapsing: embedding_std {std:.4g} < {threshold:g} x the healthy "
            f"1/sqrt({dim}) = {healthy:.4g}{details}")
