"""Contrastive and self-supervised objectives as pure, jittable JAX functions.

Every loss takes `jnp` arrays and returns a scalar (the helpers `sinkhorn_knopp`,
`dino_center_update`, `vicreg_terms`, `logsumexp_rows` and the `miners` return what their
docstrings say); none needs Flax or TensorFlow. Formulas, papers and the reference
implementation each one matches are in the docstrings and in `docs/losses.md`.
"""

from cl_jax.losses import miners
from cl_jax.losses.blockwise import logsumexp_rows
from cl_jax.losses.clustering import dino, dino_center_update, sinkhorn_knopp, swav
from cl_jax.losses.contrastive import (
    dcl,
    dclw,
    debiased_nt_xent,
    hard_negative_nt_xent,
    info_nce,
    nt_xent,
    supcon,
)
from cl_jax.losses.image_text import clip, clip_ring, siglip, siglip_ring
from cl_jax.losses.imix import imix_info_nce
from cl_jax.losses.metric import (
    contrastive_margin,
    lifted_structured,
    n_pair,
    nce,
    soft_nearest_neighbor,
    triplet_margin,
)
from cl_jax.losses.miners import mochi_negatives
from cl_jax.losses.mutual_information import bilinear_info_nce, cpc_info_nce, dim_local_global
from cl_jax.losses.non_contrastive import barlow_twins, byol, simsiam, vicreg, vicreg_terms
from cl_jax.losses.sentence import (
    cosent,
    cosine_similarity_mse,
    multiple_negatives_ranking,
    quick_thoughts,
    sbert_softmax_features,
    sentence_triplet,
    simcse,
)

__all__ = [
    "barlow_twins",
    "bilinear_info_nce",
    "byol",
    "clip",
    "clip_ring",
    "contrastive_margin",
    "cosent",
    "cosine_similarity_mse",
    "cpc_info_nce",
    "dcl",
    "dclw",
    "dim_local_global",
    "debiased_nt_xent",
    "dino",
    "dino_center_update",
    "hard_negative_nt_xent",
    "imix_info_nce",
    "info_nce",
    "lifted_structured",
    "logsumexp_rows",
    "miners",
    "mochi_negatives",
    "multiple_negatives_ranking",
    "n_pair",
    "nce",
    "nt_xent",
    "sbert_softmax_features",
    "quick_thoughts",
    "sentence_triplet",
    "siglip",
    "siglip_ring",
    "simcse",
    "simsiam",
    "sinkhorn_knopp",
    "soft_nearest_neighbor",
    "supcon",
    "swav",
    "triplet_margin",
    "vicreg",
    "vicreg_terms",
]
