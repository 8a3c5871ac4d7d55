"""Shared pieces of the config files in ``configs/``: defaults, data presets, view recipes.

A config is an ``ml_collections.ConfigDict``. Every field below exists in every config, so
any of them can be overridden on the command line (``--config.batch_size=512``).
"""

import importlib
import importlib.util
import os
import pkgutil

import ml_collections

from cl_jax import configs
from cl_jax.errors import ConfigError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
# Of the pixels of the digits' training split ('minitrain'; tests/test_pipeline.py checks).
DIGITS_MEAN, DIGITS_STD = (0.3059,), (0.3763,)
# Of the moving digits' training frames (20x20 canvases, cl_jax.data.moving_digits).
MOVING_DIGITS_MEAN, MOVING_DIGITS_STD = (0.0489,), (0.1877,)
# L*a*b* images (data.color_space="lab"): the centre and half-range of each channel's range
# (L 0..100, a -86.183..98.233, b -107.857..94.478), as CMC's train_CMC.py normalises them.
LAB_MEAN = (50.0, 6.025, -6.6895)
LAB_STD = (50.0, 92.208, 101.1675)

PRESETS = ("digits", "cifar10", "cifar100", "stl10", "imagenet", "folder")


def view(size, **overrides):
    """One view's augmentation; defaults are BYOL's first view without blur."""
    fields = dict(size=size, crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_prob=0.5,
                  jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                  grayscale_prob=0.2, blur_prob=0.0, blur_sigma=(0.1, 2.0), solarize_prob=0.0)
    unknown = set(overrides) - set(fields)
    if unknown:
        raise ConfigError(f"Unknown view augmentation fields: {sorted(unknown)}")
    fields.update(overrides)
    return ml_collections.ConfigDict(fields)


def byol_views(size, blur=(1.0, 0.1), solarize=(0.0, 0.2), **common):
    """BYOL's asymmetric pair (Grill et al. 2020, table 6): blur 1.0/0.1, solarize 0.0/0.2."""
    return (view(size, blur_prob=blur[0], solarize_prob=solarize[0], **common),
            view(size, blur_prob=blur[1], solarize_prob=solarize[1], **common))


def simclr_views(size, strength=1.0, blur_prob=0.5, **common):
    """SimCLR's symmetric pair (Chen et al. 2020, appendix A): jitter 0.8s/0.8s/0.8s/0.2s."""
    jitter = dict(brightness=0.8 * strength, contrast=0.8 * strength,
                  saturation=0.8 * strength, hue=0.2 * strength)
    v = view(size, blur_prob=blur_prob, **jitter, **common)
    return v, ml_collections.ConfigDict(v.to_dict())


def text_tower(vocab_size=1024, width=128, depth=2, num_heads=4, max_len=24, causal=True,
               pooling="eos", dropout_rate=0.0, output_dim=0):
    """A text transformer's fields (``cl_jax.models.TEXT_FIELDS``); vocab_size and pad_id are
    set from the run's tokenizer."""
    return ml_collections.ConfigDict(dict(
        vocab_size=vocab_size, width=width, depth=depth, num_heads=num_heads, mlp_ratio=4,
        max_len=max_len, causal=causal, pooling=pooling, output_dim=output_dim,
        dropout_rate=dropout_rate, pad_id=0,
        # A local Hugging Face BERT / RoBERTa directory (cl_jax.models.hf): its encoder,
        # weights and tokenizer replace the fields above (a sentence run's text tower).
        init_from_hf=""))


def base_config():
    """Every field any config has, with neutral defaults; presets and methods override."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.batch_size = 256  # global, over all devices and processes
    c.num_epochs = 100.0
    c.total_steps = -1  # >= 0 overrides num_epochs; 0 evaluates the freshly initialised model
    c.log_every_steps = 50
    c.checkpoint_every_steps = 1000
    c.eval_every_steps = -1  # -1: evaluate only at the end
    c.keep_checkpoints = 3
    c.checkpoint_async = True  # write checkpoints while training goes on
    # A step with a NaN/inf loss, gradient or update changes nothing; then "stop" (with one
    # message; the last checkpoint is the last good state) or "skip" it and train on.
    c.nonfinite = "stop"
    # On a CPU: the library for convolutions and matrix products, "auto" / "eigen" / "ynnpack"
    # (cl_jax.compile_options; auto is Eigen for ResNets, which is faster there). A run
    # option: it changes speed, not what is computed.
    c.cpu_dot_library = "auto"
    c.shard_state = False  # shard params and optimiser state over devices (FSDP), not replicate
    # GradCache (cl_jax.grad_cache): > 0 embeds the batch in chunks of so many rows, keeping
    # one chunk's activations; the gradient is the full batch's (methods that support it).
    c.grad_cache_chunk = 0
    # A restart in a workdir whose run has another config is an error unless this is True
    # (changing total_steps / num_epochs, cadences or evaluation is always allowed).
    c.allow_config_change = False
    c.online_probe = True
    c.probe_lr = 0.1

    c.data = ml_collections.ConfigDict(dict(
        source="digits", name="", data_dir="", channels=1,
        train_split="minitrain", eval_train_split="train", eval_test_split="test",
        # Evaluation during the run (eval_every_steps, evals.*.every_steps) fits on
        # val_train_split (empty: eval_train_split) and scores val_split (empty: the test
        # split); the final evaluation fits on eval_train_split and scores eval_test_split.
        # The digits hold out 'minival' from the training split for this and for tuning.
        val_split="minival", val_train_split="minitrain",
        train_dir="", eval_train_dir="", eval_test_dir="",
        cache_in_memory=True, cache_eval_in_memory=True, shuffle_buffer=16384,
        mean=DIGITS_MEAN, std=DIGITS_STD,
        # The images' colour space after augmentation, before (x - mean) / std: "rgb" or "lab"
        # (CIE L*a*b*, cl_jax.data.augment.rgb_to_lab; set mean / std to LAB_MEAN / LAB_STD).
        color_space="rgb",
        # Decode only each view's crop window of a JPEG (the same pixels). Saves work with one
        # view per image; with two or more, decoding the image once is as fast or faster
        # (benchmarks/RESULTS.md).
        fused_crop=False,
        # source="glyphs" (cl_jax.data.glyphs): render size, fonts (() = its default set),
        # the seed that draws the held-out code points, and a subset of code points (()=all).
        glyph_size=32, glyph_fonts=(), glyph_seed=0, glyph_code_points=(),
        # source="moving_digits" (cl_jax.data.moving_digits): clips of the digits on a canvas;
        # an example is frame_stack consecutive frames of each of the cameras (channels =
        # cameras * frame_stack), speed in pixels per frame.
        canvas_size=20, clip_length=8, frame_stack=3, cameras=1, clip_speed=(1.0, 2.0),
        clip_seed=0,
        # source="craftax" (cl_jax.data.craftax_frames): random-policy rollouts of so many
        # environments and steps (seed clip_seed), cached in data_dir; frame_stack as above.
        craftax_envs=16, craftax_steps=1000,
        # More splits of the source for the evaluators (their `split` setting names them),
        # and a sentencepiece model for captions (empty: trained on the training captions).
        extra_eval_splits=(), tokenizer_file="",
        tokenizer_captions=100_000,  # the first so many training captions train the tokenizer
        # source="csv" / "webdataset" / "coco" (cl_jax.data.captions; see sources.load_split).
        csv_path="", eval_csv_path="", csv_image_column="filepath", csv_caption_column="title",
        shards="", eval_shards="",
        bad_images="skip",  # an unreadable image file: "skip" it (with a warning) or "fail"
        # Text sources (cl_jax.data.text): "wordnet", "pydoc" (embedded), "lines" / "nli"
        # (train_file);
        # nli_form "triples" (anchor, entailment, contradiction) or "pairs" (labelled); the
        # seed and size (0: all) of WordNet's samples, of its probe splits, and the pairs of
        # its similarity benchmark; where evaluation splits named as WordNet's come from.
        train_file="", nli_form="triples", text_seed=0, text_limit=0, text_eval_limit=0,
        text_sts_pairs=2000, text_eval_source="wordnet",
        text_chunk=0))  # > 0: examples of so many consecutive sentences (Quick-Thoughts)

    c.augment = ml_collections.ConfigDict(dict(
        num_global_views=2, num_local_views=0,
        # Colour jitter, grayscale, blur, solarize and normalisation inside the jitted step on
        # the accelerator (as the BYOL reference does); the host only crops and flips.
        colour_on_device=False,
        # Image-text runs: the probability of dropping each word of a caption (on the host).
        caption_word_dropout=0.0,
        # Sentence runs, on the host per sentence (cl_jax.data.text_augment): the probability
        # of dropping each word, the window words are shuffled within (0: none), and EDA's
        # WordNet synonyms: the probability of replacing each word, of inserting one.
        word_dropout=0.0, word_shuffle_window=0, synonym_replace=0.0, synonym_insert=0.0,
        # Every image view, after its crop and flip (cl_jax.data.randaugment, big_vision's
        # op definitions): RandAugment's N ops at magnitude M (0: off) from the paper's 14
        # ops ("paper") or big_vision's 16; or AutoAugment's learned policy ("imagenet").
        randaugment_num_ops=0, randaugment_magnitude=9, randaugment_ops="paper",
        autoaugment="",
        view1=view(8), view2=view(8), local=view(6, crop_scale=(0.2, 0.5))))

    c.model = ml_collections.ConfigDict(dict(
        encoder="convnet", stem="imagenet", widths=(32, 64, 128), width_multiplier=1,
        zero_init_residual=False,
        norm="batch",  # ConvNet / ResNet normalisation: "batch" or "layer" (cl_jax.models.norm)
        # ViT only (cl_jax.models.vit): patch size, heads (0: the size's default), position
        # embedding "learn" / "sincos2d", MoCo v3's frozen random patch projection.
        patch_size=16, num_heads=0, posemb="learn", frozen_patch_embedding=False,
        # Compute dtype of the encoder: "bfloat16" for mixed precision (parameters, optimiser
        # state, heads and losses stay float32); remat recomputes block activations in the
        # backward pass (ResNet, ViT) to save memory.
        dtype="float32", remat=False,
        # Initialise the top-level modules init_modules from the latest checkpoint of the run
        # in init_from (a workdir), e.g. LiT's image tower.
        init_from="", init_modules=("encoder",),
        # encoder="text": the text transformer (cl_jax.models.TextTransformer); vocab_size and
        # pad_id are the run's tokenizer's.
        text=text_tower()))

    c.method = ml_collections.ConfigDict(dict(name=""))

    c.optim = ml_collections.ConfigDict(dict(
        name="lars", base_lr=0.3, lr_scaling="linear", warmup_epochs=10.0, warmup_steps=-1,
        schedule="cosine",  # after the warmup: "cosine" or "linear" decay to end_lr_factor
        end_lr_factor=0.0, weight_decay=1e-6, momentum=0.9, nesterov=False,
        trust_coefficient=0.001, clip_lr=False, b1=0.9, b2=0.999,
        lamb_eps=1e-6,  # LAMB's Adam epsilon (You et al. 2020); AdamW keeps optax's 1e-8
        # Modules kept at the peak lr (SimSiam's predictor), the lr factor of biases and
        # BatchNorm parameters (Barlow Twins), and modules never updated (LiT's locked image
        # tower, e.g. ("encoder",)): see cl_jax.optim.
        constant_lr_modules=(), bias_lr_factor=1.0, frozen_modules=()))

    # How the evaluators see the data: frozen features of centre crops (cl_jax.train).
    c.eval = ml_collections.ConfigDict(dict(
        image_size=8, crop_fraction=1.0, batch_size=256, max_train_examples=-1,
        # Keep image features on the devices, split by rows, for kNN and the linear probes
        # (cl_jax.evaluation.device_features): no host holds a whole split's features.
        features_on_device=False,
        # The graded-similarity split "sts" of sentence runs: a TSV (sentence1, sentence2,
        # score; or the SICK / STS-benchmark layouts; sts_sick_set picks SICK.txt's SemEval
        # set, e.g. TEST) or "glue/stsb:validation" (TFDS).
        sts_file="", sts_sick_set="", sts_tfds="",
        # The split "probe": a TSV of labelled sentences (sentence, label), scored by the
        # evaluator type "sentence_probe" (SentEval's k-fold logistic regression).
        probe_file=""))
    # The evaluators (cl_jax.evaluation.registry): name -> type, cadence, settings.
    # every_steps: 0 = the run's eval_every_steps, -1 = only at the end. A linear probe runs
    # `epochs` over its training features if >= 0, else `steps`.
    probe = dict(epochs=-1.0, steps=1000, batch_size=1024, lr=0.01, weight_decay=1e-4)
    c.evals = ml_collections.ConfigDict(dict(
        knn=dict(type="knn", every_steps=0, k=200, temperature=0.07),
        linear=dict(type="linear", every_steps=0, **probe),
        fewshot=dict(type="fewshot", every_steps=0, per_class=3, draws=5, **probe),
        # SimCLR's semi-supervised protocol (cl_jax.evaluation.finetune): encoder and linear
        # head fine-tuned on each class-balanced fraction of the labels for its epochs.
        # The digits' 1% and 10% are 10 and 144 images: batches of 32 at a fixed lr 0.1 (one
        # step an epoch at SimCLR's batch would hardly move the head); presets: SimCLR's.
        finetune=dict(type="finetune", every_steps=-1,
                      **dict(FINETUNE, batch_size=32, lr=0.1, lr_scaling="none")),
        # embedding_std, rankme, uniformity, alignment (cl_jax.evaluation.collapse).
        collapse=dict(type="collapse", every_steps=0, split="test", max_examples=2048,
                      warn_below=0.2),
        # workdir/plots/ and TensorBoard: a 2-D map, a nearest-neighbour sheet, the
        # projector's files (cl_jax.evaluation.pictures); at the end of the run.
        pictures=dict(type="pictures", every_steps=-1, split="test", max_examples=1000,
                      map="auto", queries=8, neighbours=6, thumbnail_size=32)))
    return c


# SimCLR's fine-tuning (Chen et al. 2020, appendix B.5): Nesterov momentum 0.9, lr 0.05 x
# batch / 256 (0.8 at 4096), cosine decay without warmup, no weight decay, 60 epochs on 1% of
# the labels and 30 on 10%, Inception crops and flips only.
FINETUNE = dict(fractions=(0.01, 0.1), epochs=(60.0, 30.0), batch_size=4096, lr=0.05,
                lr_scaling="linear", momentum=0.9, nesterov=True, weight_decay=0.0,
                crop_scale=(0.08, 1.0), mix="none", mix_alpha=1.0, seed=0)


# For sources without the digits' minival: evaluation during the run scores the test split.
NO_VALIDATION_SPLIT = dict(val_split="", val_train_split="")


def set_data_preset(c, preset):
    """Points ``c.data`` / ``c.eval`` / ``c.model`` at one of ``PRESETS``."""
    d = c.data
    if preset == "digits":
        return c
    d.update(train_split="train", **NO_VALIDATION_SPLIT)
    if "finetune" in c.evals:
        c.evals.finetune.update(FINETUNE)
    if preset in ("cifar10", "cifar100"):
        mean, std = (CIFAR10_MEAN, CIFAR10_STD) if preset == "cifar10" else (CIFAR100_MEAN,
                                                                              CIFAR100_STD)
        d.update(source="tfds", name=preset, channels=3, mean=mean, std=std,
                 cache_in_memory=True, cache_eval_in_memory=True)
        c.model.update(encoder="resnet18", stem="cifar")
        c.eval.update(image_size=32, crop_fraction=1.0)
    elif preset == "stl10":
        # Pre-train on the 100k unlabelled images; probes on the 5k labelled train images.
        d.update(source="tfds", name="stl10", channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 train_split="unlabelled", eval_train_split="train", eval_test_split="test",
                 cache_in_memory=False, cache_eval_in_memory=True)
        c.model.update(encoder="resnet18", stem="imagenet")
        c.eval.update(image_size=96, crop_fraction=1.0)
    elif preset == "imagenet":
        d.update(source="tfds", name="imagenet2012", channels=3, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, eval_test_split="validation", cache_in_memory=False,
                 cache_eval_in_memory=False)
        c.model.update(encoder="resnet50", stem="imagenet")
        c.eval.update(image_size=224, crop_fraction=0.875, features_on_device=True)
    elif preset == "folder":
        d.update(source="folder", channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        c.model.update(encoder="resnet18", stem="imagenet")
        c.eval.update(image_size=224, crop_fraction=0.875)
    else:
        raise ConfigError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    return c


def moving_digits_preset(c, frame_stack=3, cameras=1):
    """The moving digits (``cl_jax.data.moving_digits``; the digits' splits): examples of
    ``frame_stack`` frames of 20x20 canvases, evaluated on centre 16x16 crops (CURL's eval
    crop, 84 of 100, in miniature), and ridge probes of the digit's position and velocity
    (evaluator ``regression``: with every training example and with 30 of them) besides the
    digit's identity. Fine-tuning is off."""
    c.data.update(source="moving_digits", channels=frame_stack * cameras,
                  frame_stack=frame_stack, cameras=cameras,
                  mean=MOVING_DIGITS_MEAN, std=MOVING_DIGITS_STD)
    c.eval.update(image_size=16, crop_fraction=0.8)
    return frame_evals(c)


def frame_evals(c):
    """The evaluators of frame-stack data (the moving digits, Craftax): ridge probes of the
    split's regression targets (``Split.targets``) with every training example and with 30
    of them, besides the label probes; fine-tuning off."""
    c.evals.regression = dict(type="regression", every_steps=0, alpha=1.0, few_examples=30,
                              draws=5)
    del c.evals["finetune"]
    return c


def config_names():
    """The packaged configs, ``cl_jax/configs/NAME.py``, by the NAME ``--config=NAME`` takes."""
    return sorted(m.name for m in pkgutil.iter_modules(configs.__path__)
                  if not m.name.startswith("_"))


def load_config_module(target):
    """A packaged config by name (``byol``) or a config file by path (``configs/byol.py``)."""
    names = ", ".join(config_names())
    if target.endswith(".py") or os.path.dirname(target):
        if not os.path.exists(target):
            raise ConfigError(f"No config file at {target!r}. Name a packaged config instead "
                              f"(e.g. --config=byol:cifar10), one of {names}.")
        module_spec = importlib.util.spec_from_file_location("cl_jax_config", target)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    if target not in config_names():
        raise ConfigError(f"No config named {target!r}; choose one of {names}, or give a file "
                          "path ending in .py (e.g. --config=configs/byol.py).")
    return importlib.import_module(f"{configs.__name__}.{target}")


def load_config_file(spec):
    """Loads ``NAME[:preset]`` (a packaged config) or ``path/to/config.py[:preset]`` as the
    command line does: ``get_config(preset)``, or ``get_config()`` without a preset.

    A config that declares ``PRESETS`` (all packaged ones do) accepts only those presets.
    """
    target, _, preset = spec.partition(":")
    module = load_config_module(target)
    presets = getattr(module, "PRESETS", None)
    if preset and presets is not None and preset not in presets:
        raise ConfigError(f"Config {target} has no preset {preset!r}; choose one of "
                          f"{', '.join(presets)}.")
    return module.get_config(preset) if preset else module.get_config()


def field_names(config, prefix=""):
    """Every overridable field of ``config`` as a dotted name, e.g. ``optim.base_lr``."""
    names = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            names += field_names(value, name + ".")
        else:
            names.append(name)
    return names
