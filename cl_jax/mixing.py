"""Batch mixing: mixup, CutMix and the matching label mixing, pure JAX, deterministic per key.

* mixup (Zhang, Cisse, Dauphin & Lopez-Paz 2018, "mixup: Beyond Empirical Risk Minimization",
  ICLR 2018, arXiv:1710.09412): ``mixed_i = lam * x_i + (1 - lam) * x_perm(i)``,
  ``lam ~ Beta(alpha, alpha)``.
* CutMix (Yun, Han, Oh, Chun, Choe & Yoo 2019, "CutMix: Regularization Strategy to Train
  Strong Classifiers with Localizable Features", ICCV 2019, arXiv:1905.04899): a box of
  ``x_perm(i)`` pasted into ``x_i``, ``lam`` the fraction of ``x_i`` that is left.
* i-Mix (Lee et al. 2021, arXiv:2010.08887) applies either to contrastive learning, with each
  example its own virtual class: ``cl_jax.losses.imix.imix_info_nce``.

Each op returns ``(mixed, perm, lam)``: row ``i`` of ``mixed`` is made of rows ``i`` and
``perm[i]`` of the batch, and its target puts weight ``lam`` on row ``i``'s label and
``1 - lam`` on row ``perm[i]``'s (``mix_labels``). ``perm`` is a uniformly random permutation,
so it can map a row to itself (that row is then unmixed, as in the references, which use
``torch.randperm`` too). Everything is jittable, with ``alpha`` traced or not and the batch
sharded over devices (``x[perm]`` then gathers across them).

``alpha``: ``alpha <= 0`` means no mixing, ``lam = 1`` and ``mixed == images`` (the
``alpha > 0`` switch of facebookresearch/mixup-cifar10 and clovaai/CutMix-PyTorch);
``alpha = 1`` draws ``lam`` uniformly; small ``alpha`` puts ``lam`` near 0 or 1, large
``alpha`` near 0.5.
"""

import jax
import jax.numpy as jnp


def _sample_lam(key, alpha, shape, at_least_half):
    """``lam ~ Beta(alpha, alpha)`` of ``shape``; 1 where ``alpha <= 0``."""
    alpha = jnp.asarray(alpha, jnp.float32)
    valid = alpha > 0
    lam = jax.random.beta(key, jnp.where(valid, alpha, 1.0), jnp.where(valid, alpha, 1.0), shape)
    lam = jnp.where(valid, lam, 1.0)
    return jnp.maximum(lam, 1.0 - lam) if at_least_half else lam


def _per_row(lam, ndim):
    """``lam`` (scalar or (N,)) shaped to broadcast against an (N, ...) array of ``ndim``."""
    return lam.reshape(lam.shape + (1,) * (ndim - lam.ndim))


def mixup(key, images, alpha, *, per_example=False, lam_at_least_half=False):
    """mixup of a batch: ``mixed = lam * x + (1 - lam) * x[perm]``.

    ``images``: (N, ...) (images, or any features: i-Mix also mixes hidden layers).
    ``lam ~ Beta(alpha, alpha)``, one for the batch (a float32 scalar), as in Zhang et al. and
    facebookresearch/mixup-cifar10; ``per_example=True`` draws one per row ((N,)), as
    kibok90/imix ``builder.mixup`` does by default. ``lam_at_least_half=True`` replaces
    ``lam`` by ``max(lam, 1 - lam)`` so each row's own example dominates, as the i-Mix code
    does (in ``mixup`` and ``cutmix``). Computed in float32; returned in ``images``' dtype
    if it is a floating one (bfloat16 in, bfloat16 out), else as float32.
    """
    perm_key, lam_key = jax.random.split(key)
    n = images.shape[0]
    perm = jax.random.permutation(perm_key, n)
    lam = _sample_lam(lam_key, alpha, (n,) if per_example else (), lam_at_least_half)
    x = jnp.asarray(images)
    out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    x = x.astype(jnp.float32)
    weight = _per_row(lam, x.ndim)
    mixed = weight * x + (1.0 - weight) * x[perm]
    return mixed.astype(out_dtype), perm, lam


def _box_mask(key, lam, height, width):
    """CutMix's box (clovaai/CutMix-PyTorch ``rand_bbox``) as an (H, W) bool mask: sides
    ``floor(H sqrt(1 - lam))`` and ``floor(W sqrt(1 - lam))``, an integer centre uniform over
    the pixels, corners ``centre -/+ side // 2`` clipped to the image."""
    y_key, x_key = jax.random.split(key)
    ratio = jnp.sqrt(1.0 - lam)

    def span(k, size):
        cut = jnp.floor(size * ratio).astype(jnp.int32)
        centre = jax.random.randint(k, (), 0, size)
        start = jnp.clip(centre - cut // 2, 0, size)
        stop = jnp.clip(centre + cut // 2, 0, size)
        index = jnp.arange(size)
        return (index >= start) & (index < stop)

    return span(y_key, height)[:, None] & span(x_key, width)[None, :]


def cutmix(key, images, alpha, *, lam_at_least_half=False):
    """CutMix of a batch of images (N, H, W, C): one box for the whole batch, the box of
    ``x[perm]`` pasted into ``x``.

    ``lam ~ Beta(alpha, alpha)`` sets the box (area fraction about ``1 - lam``, see
    ``_box_mask``); the returned ``lam`` is the adjusted one, ``1 - box area / (H W)`` after
    clipping and rounding, the exact fraction of each mixed row that is its own image (the
    "adjust lambda to exactly match pixel ratio" step of clovaai/CutMix-PyTorch
    ``train.py``, kept by kibok90/imix ``builder.cutmix``). ``lam_at_least_half``: as in
    ``mixup``, applied to the drawn ``lam`` before the box. The box is a mask of ``iota``
    comparisons, so shapes are static. The reference applies CutMix to a batch with a
    probability (``--cutmix_prob``); draw that outside. Any dtype (only pixels are copied).
    """
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    n, height, width = images.shape[:3]
    perm_key, lam_key, box_key = jax.random.split(key, 3)
    perm = jax.random.permutation(perm_key, n)
    lam = _sample_lam(lam_key, alpha, (), lam_at_least_half)
    inside = _box_mask(box_key, lam, height, width)
    mixed = jnp.where(inside[None, :, :, None], images[perm], images)
    return mixed, perm, 1.0 - jnp.sum(inside, dtype=jnp.float32) / (height * width)


KINDS = ("none", "mixup", "cutmix")  # the ``mix`` settings of the supervised paths


def mix_batch(kind, key, images, alpha):
    """``mixup`` or ``cutmix`` (``kind``) of a batch with one ``lam`` for it, as Zhang et al.
    and Yun et al. mix: ``(mixed, perm, lam)``."""
    if kind not in ("mixup", "cutmix"):
        raise ValueError(f"kind must be mixup or cutmix, got {kind!r}")
    return (mixup if kind == "mixup" else cutmix)(key, images, alpha)


def mix_labels(labels_onehot, perm, lam):
    """Mixed targets ``lam * y + (1 - lam) * y[perm]`` (float32) for the supervised paths.

    ``labels_onehot``: (N, K) one-hot (or soft) labels; ``perm`` and ``lam`` (scalar or (N,))
    as returned by ``mixup`` / ``cutmix``. i-Mix's virtual labels are
    ``mix_labels(jnp.eye(N), perm, lam)``.
    """
    y = jnp.asarray(labels_onehot).astype(jnp.float32)
    weight = _per_row(jnp.asarray(lam, jnp.float32), y.ndim)
    return weight * y + (1.0 - weight) * y[perm]
