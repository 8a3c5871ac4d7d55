"""CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision", arXiv:2103.00020): an image tower and a text tower, the symmetric contrastive
loss over the batch's image-text similarities with a learned temperature
(``cl_jax.methods.clip``).

Presets (``--config=clip:<preset>``):

glyphs (default) — the embedded image-text set (``cl_jax.data.glyphs``): every named Unicode
  code point the fonts bundled with matplotlib cover, rendered at 32x32 in 16 faces of
  DejaVu Sans / Sans Mono / Serif and STIX, paired with its Unicode name ("latin small letter
  a with acute"). Training: 15 faces; evaluation on the held-out face DejaVu Serif
  (``eval_font``) and on the 10% of code points never seen in training (``eval_novel``).
    python -m cl_jax.main --config=clip --workdir=runs/clip
  A small ConvNet and a 2-layer causal text transformer (sentencepiece pieces trained on the
  training names at the start of the run, kept in the workdir), batch 256, AdamW (lr 1e-3,
  weight decay 0.1, beta2 0.98 as CLIP), 480 steps. It prints image->text / text->image
  Recall@1/5/10 of the held-out face against its own names (2,948 pairs) and of the novel
  code points (``novel_``: 4,910 pictures of 714 names in several faces; an image finds its
  name, a name any picture of it), zero-shot classification of the held-out
  glyphs by their script (prompts from the script's name, CLIP's prompt ensembling) beside
  the majority-class baseline, and kNN / linear probes of the image encoder's features by
  script. The README has the numbers and the random-init baseline
  (``--config.total_steps=0``). Deviations from the paper, which trains a ResNet or ViT on
  400M pairs for 32 epochs at batch 32,768: everything is small; no augmentation beyond a
  mild random crop (glyphs are not flipped: a flip makes another character).

coco, csv, webdataset — the image-text data users bring, with CLIP's ResNet-50 image tower
  and its 12-layer, 512-wide text transformer (the paper's table 19 / 20; embedding 1024,
  AdamW beta2 0.98, weight decay 0.2, warmup then cosine), trained from scratch at batch
  1024 for 30 epochs, 224 px random crops, sentencepiece pieces (32k) trained on the
  training captions. Retrieval Recall@1/5/10 is scored on an evaluation split held in memory.
  - ``coco``: TFDS ``coco_captions`` (Karpathy splits; ``tfds build coco_captions`` first, and
    ``--config.data.data_dir``): train on ``train``, score on the 5k ``test`` images with
    their ~25k captions; one of an image's five captions per step, drawn by
    (seed, epoch, index).
        python -m cl_jax.main --config=clip:coco --workdir=runs/clip_coco
  - ``csv``: ``--config.data.csv_path=FILE`` (open_clip's tab-separated file: a header
    naming a ``filepath`` and a ``title`` column; paths absolute or relative to the file),
    ``--config.data.eval_csv_path`` for the held-out pairs.
  - ``webdataset``: ``--config.data.shards='DIR/{00000..00099}.tar'`` (img2dataset's shards:
    ``KEY.jpg`` / ``KEY.png`` with ``KEY.txt``), each process reading its own rows; the
    captions are tokenised in tf.data by tensorflow-text (``pip install --no-deps
    tensorflow-text==2.21.1``). Evaluation shards (``eval_shards``) are streamed and not
    scored yet: retrieval needs its pairs in memory.
  No published number matches these settings: the CLIP paper trains on 400M pairs, and
  big_vision's ``lit_coco`` / ``siglip_lit_coco`` configs start from pretrained ViT-B/16 and
  BERT towers (pretrained towers cannot be loaded here yet). Expect COCO retrieval far below
  the paper's zero-shot numbers from COCO alone.
"""

from cl_jax import config_lib
from cl_jax.errors import ConfigError

PRESETS = ("glyphs", "coco", "csv", "webdataset")

GLYPHS_MEAN, GLYPHS_STD = (0.0968,), (0.2709,)  # ink over the training split, 32 px


text_tower = config_lib.text_tower  # the text transformer's fields


def image_text_config(loss="clip", preset=PRESETS[0]):
    """The image-text defaults shared by CLIP, SigLIP and LiT."""
    if preset not in PRESETS:
        raise ConfigError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    c = config_lib.base_config()
    c.online_probe = False
    c.method.update(dict(name="clip", loss=loss, embed_dim=128, init_scale=0.0, init_bias=-10.0,
                         lock_image=False, ring=False, block_size=0, text=text_tower()))
    c.optim.update(name="adamw", lr_scaling="none", warmup_epochs=0.0, b1=0.9, b2=0.98)
    c.evals.retrieval = dict(type="retrieval", every_steps=0, split="test")
    del c.evals.fewshot
    if preset == "glyphs":
        return glyphs_preset(c)
    return user_data_preset(c, preset)


def glyphs_preset(c):
    c.data.update(source="glyphs", channels=1, train_split="train", eval_train_split="train",
                  eval_test_split="eval_font", extra_eval_splits=("eval_novel",),
                  **config_lib.NO_VALIDATION_SPLIT,
                  mean=GLYPHS_MEAN, std=GLYPHS_STD)
    view = config_lib.view(32, crop_scale=(0.7, 1.0), crop_ratio=(0.9, 1.1), flip_prob=0.0,
                           jitter_prob=0.0, grayscale_prob=0.0)
    c.augment.update(num_global_views=1, view1=view, view2=view)
    c.model.update(encoder="convnet", widths=(16, 32, 64, 128))
    c.batch_size = 256
    c.total_steps = 480
    c.log_every_steps = 100
    c.optim.update(base_lr=1e-3, warmup_steps=50, weight_decay=0.1)
    c.eval.update(image_size=32, crop_fraction=1.0, batch_size=512, max_train_examples=10000)
    c.evals.zeroshot = dict(type="zeroshot", every_steps=0, split="test")
    c.evals.retrieval_novel = dict(type="retrieval", every_steps=0, split="eval_novel",
                                   prefix="novel_")
    return c


def user_data_preset(c, preset):
    """COCO captions, a caption TSV or webdataset shards: CLIP's ResNet-50 with its text
    transformer (Radford et al. 2021, table 19/20: width 512, 12 layers, 8 heads, embedding
    1024; AdamW beta2 0.98, weight decay 0.2, cosine after a warmup), from scratch."""
    c.data.update(source=preset, channels=3, mean=config_lib.IMAGENET_MEAN,
                  std=config_lib.IMAGENET_STD, **config_lib.NO_VALIDATION_SPLIT)
    if preset == "coco":  # Karpathy splits of TFDS coco_captions; 5k test images
        c.data.update(train_split="train", eval_test_split="test", cache_in_memory=True,
                      cache_eval_in_memory=True)
    view = config_lib.view(224, crop_scale=(0.5, 1.0), jitter_prob=0.0, grayscale_prob=0.0)
    c.augment.update(num_global_views=1, view1=view, view2=view, caption_word_dropout=0.0)
    c.model.update(encoder="resnet50", stem="imagenet")
    c.method.update(embed_dim=1024, text=text_tower(vocab_size=32_000, width=512, depth=12,
                                                    num_heads=8, max_len=77))
    c.batch_size = 1024
    c.num_epochs = 30.0
    c.log_every_steps = 100
    c.checkpoint_every_steps = 2000
    c.optim.update(base_lr=5e-4, warmup_steps=2000, weight_decay=0.2)
    c.eval.update(image_size=224, crop_fraction=1.0, batch_size=256, max_train_examples=-1)
    del c.evals.knn, c.evals.linear  # no labels
    return c


def get_config(preset=PRESETS[0]):
    return image_text_config("clip", preset)
