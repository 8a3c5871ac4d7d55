"""LiT (Zhai et al. 2022, "LiT: Zero-Shot Transfer with Locked-image Text Tuning",
arXiv:2111.07991): CLIP's loss with the image encoder taken from an earlier run and locked
(inference mode, no gradient, frozen in the optimiser); only the image projection, the text
tower and the temperature learn.

Presets (``--config=lit:<preset>``):

glyphs (default) — the embedded glyph set. First train an image encoder on it (any run whose
  ``model`` fields match, e.g. CLIP's default, or a self-supervised method on the glyphs),
  then lock it:
    python -m cl_jax.main --config=clip --workdir=runs/clip
    python -m cl_jax.main --config=lit --workdir=runs/lit --config.model.init_from=runs/clip
  The encoder's parameters and BatchNorm statistics stay bit-identical to those of
  ``init_from`` while the text tower learns. Without ``init_from`` the run is an error: a
  locked encoder must come from somewhere.
"""

from cl_jax.configs import clip

PRESETS = clip.PRESETS


def get_config(preset=PRESETS[0]):
    c = clip.image_text_config("clip", preset)
    c.method.lock_image = True
    c.optim.frozen_modules = ("encoder",)
    c.model.init_modules = ("encoder",)
    return c
