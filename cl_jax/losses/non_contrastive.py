"""Non-contrastive losses: BYOL, SimSiam, Barlow Twins, VICReg.

All take two ``(N, D)`` batches of the same examples, return a float32 scalar, compute in
float32 (bfloat16 inputs are upcast first) and are pure ``jax.numpy`` (``jit``, ``grad``,
``vmap``). Batch statistics (Barlow Twins, VICReg) are over the global batch: under ``jit``
with the batch sharded across devices, XLA inserts the cross-device reductions.
"""

import jax.numpy as jnp

from cl_jax.losses._utils import check_pair, l2_normalize, to_float32


def _cosine(p, z):
    return jnp.sum(l2_normalize(p) * l2_normalize(z), axis=-1)


def _off_diagonal_squares(c):
    return jnp.sum(jnp.where(jnp.eye(c.shape[0], dtype=bool), 0.0, c * c))


def byol(p, z):
    """BYOL regression loss (Grill et al. 2020, "Bootstrap Your Own Latent"), one direction.

    ``mean_i (2 - 2 cos(p_i, z_i))`` = ``mean_i |p_i/|p_i| - z_i/|z_i||^2``. As
    deepmind-research/byol's ``regression_loss``, batch mean; the method symmetrises by
    adding the loss with the views swapped. The loss itself contains no stop-gradient: pass
    ``jax.lax.stop_gradient(z)`` for the target network's projection. (deepmind-research
    normalises with ``x * rsqrt(max(|x|^2, 1e-12))``, here ``x / max(|x|, 1e-12)``: the same
    for any ``|x| > 1e-6``.) Counterparts: solo-learn ``byol_loss_func``; lightly
    ``NegativeCosineSimilarity()(p, z)`` is ``mean_i -cos(p_i, z_i)``, so this loss is
    ``2 + 2 * NegativeCosineSimilarity()(p, z)``.
    """
    check_pair(p, z)
    return jnp.mean(2.0 - 2.0 * _cosine(p, z))


def simsiam(p, z):
    """SimSiam loss (Chen & He 2021, "Exploring Simple Siamese Representation Learning"), one
    direction: ``mean_i -cos(p_i, z_i)``.

    As facebookresearch/simsiam (``-nn.CosineSimilarity(dim=1)(p, z).mean()``; the method
    symmetrises with weight 1/2 per direction). The caller stops the gradient on ``z``.
    Counterparts: solo-learn ``simsiam_loss_func``, lightly ``NegativeCosineSimilarity``.
    """
    check_pair(p, z)
    return jnp.mean(-_cosine(p, z))


def barlow_twins(z1, z2, lambda_=0.0051):
    """Barlow Twins (Zbontar, Jing, Misra, LeCun & Deny 2021, "Barlow Twins: Self-Supervised
    Learning via Redundancy Reduction").

    Each dimension is standardised over the batch, ``(z - mean) / sqrt(var + 1e-5)`` with
    the biased variance (torch ``BatchNorm1d(affine=False)`` in training mode, eps 1e-5),
    ``C = z1n^T z2n / N`` and ``loss = sum_i (1 - C_ii)^2 + lambda_ sum_{i != j} C_ij^2``.

    Convention: facebookresearch/barlowtwins ``main.py`` (default ``lambd=0.0051``; no
    ``scale_loss``). On one device it is identical; the official multi-GPU code standardises
    with per-device BatchNorm statistics and sums the per-device ``C`` (each divided by the
    global batch size), whereas here the statistics are those of the global batch.
    Counterparts: lightly ``BarlowTwinsLoss(lambda_param=lambda_)`` (eps 1e-5; its default
    ``lambda_param`` is 5e-3), solo-learn ``barlow_loss_func`` (``lamb=5e-3``, with an extra
    factor ``scale_loss``).
    """

    def standardize(z):
        z = to_float32(z)
        centered = z - jnp.mean(z, axis=0)
        return centered / jnp.sqrt(jnp.mean(centered * centered, axis=0) + 1e-5)

    check_pair(z1, z2)
    c = standardize(z1).T @ standardize(z2) / z1.shape[0]
    on_diag = jnp.sum((1.0 - jnp.diagonal(c)) ** 2)
    return on_diag + lambda_ * _off_diagonal_squares(c)


def vicreg_terms(z1, z2):
    """The three unweighted VICReg terms, as a dict (for logging):

    - ``"invariance"``: ``mean((z1 - z2)^2)`` over all elements (``F.mse_loss``);
    - ``"variance"``: ``(mean_d relu(1 - std(z1)_d) + mean_d relu(1 - std(z2)_d)) / 2``
      with ``std = sqrt(unbiased var + 1e-4)``;
    - ``"covariance"``: ``sum_{i != j} cov(z1)_ij^2 / D + sum_{i != j} cov(z2)_ij^2 / D``,
      covariance normalised by ``N - 1``.

    Needs ``N >= 2``. See :func:`vicreg`.
    """
    check_pair(z1, z2)
    z1, z2 = to_float32(z1), to_float32(z2)
    n, d = z1.shape

    def variance_and_covariance(z):
        z = z - jnp.mean(z, axis=0)
        std = jnp.sqrt(jnp.sum(z * z, axis=0) / (n - 1) + 1e-4)
        cov = z.T @ z / (n - 1)
        return jnp.mean(jnp.maximum(1.0 - std, 0.0)), _off_diagonal_squares(cov) / d

    var1, cov1 = variance_and_covariance(z1)
    var2, cov2 = variance_and_covariance(z2)
    return {
        "invariance": jnp.mean((z1 - z2) ** 2),
        "variance": (var1 + var2) / 2.0,
        "covariance": cov1 + cov2,
    }


def vicreg(z1, z2, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
    """VICReg (Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance
    Regularization for Self-Supervised Learning").

    ``sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance`` with the terms
    of :func:`vicreg_terms`. Convention: facebookresearch/vicreg ``main_vicreg.py`` exactly
    (variance averaged over the two branches, covariance summed). There the invariance term
    is the per-device MSE and the other two use the all-gathered batch; here all three are
    over the global batch (for equal shards the invariance term is the mean of the
    per-device ones). Counterparts: lightly ``VICRegLoss`` and pytorch-metric-learning
    ``VICRegLoss`` (same convention), solo-learn ``vicreg_loss_func`` (its variance term is
    the *sum* over the two branches, twice this).
    """
    terms = vicreg_terms(z1, z2)
    return (
        sim_coeff * terms["invariance"]
        + std_coeff * terms["variance"]
        + cov_coeff * terms["covariance"]
    )
