"""SigLIP (Zhai, Mustafa, Kolesnikov & Beyer 2023, "Sigmoid Loss for Language Image
Pre-Training", arXiv:2303.15343): CLIP's two towers with the pairwise sigmoid loss
(``cl_jax.losses.siglip``), a learned scale (initialised at 10) and bias (at -10), as
big_vision's ``siglip`` trainer.

Presets (``--config=siglip:<preset>``):

glyphs (default), coco, csv, webdataset — the data and towers of ``configs/clip.py``, with
  the sigmoid loss:
    python -m cl_jax.main --config=siglip --workdir=runs/siglip
  It prints the evaluations of CLIP's default (the README has both). With
  ``--config.method.ring=True`` on several devices the loss runs as a ring over the devices
  (``losses.siglip_ring``), never holding more than one device's block of logits.
"""

from cl_jax.configs import clip

PRESETS = clip.PRESETS


def get_config(preset=PRESETS[0]):
    return clip.image_text_config("siglip", preset)
