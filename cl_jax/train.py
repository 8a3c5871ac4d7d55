"""The training loop, top to bottom: data, model, state, step, log, evaluate, checkpoint.

``train_and_evaluate(config, workdir)`` trains the method of ``config`` and returns the final
evaluation (``knn_top1``, ``linear_top1``, ``fewshot_top1``), also written to
``workdir/eval.json``. A restart with the same workdir resumes from the latest checkpoint and
continues exactly as an uninterrupted run would, whether the run was stopped cleanly
(SIGTERM, Ctrl-C: it saves first) or killed (SIGKILL, a lost machine: the last periodic
checkpoint), with the metrics logged after that checkpoint replaced.

Multi-host: every process runs this same function; each reads its rows of every global
batch, only process 0 writes metrics, config and evaluation, and all take part in
checkpointing.
"""

import dataclasses
import itertools
import json
import math
import os

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from cl_jax import (
    compile_options,
    data,
    device_augment,
    evaluation,
    methods,
    models,
    parallel,
    resume,
)
from cl_jax.checkpoint import Checkpointer, PreemptionGuard, load_modules
from cl_jax.data import captions, pipeline, text_augment
from cl_jax.data import text as text_data
from cl_jax.data import tokenizer as tokenizer_lib
from cl_jax.errors import ConfigError, DataError, UserError
from cl_jax.evaluation import device_features
from cl_jax.metric_writer import MetricWriter
from cl_jax.state import create_method_and_optimizer, init_train_state, make_train_step


@dataclasses.dataclass
class Experiment:
    """Everything a run is built from, derived from the config once."""

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    train_split: data.Split
    eval_train_split: data.Split | None
    eval_test_split: data.Split | None
    num_classes: int
    steps_per_epoch: float
    total_steps: int
    method: methods.Method
    schedule: object
    tx: object
    tokenizer: object = None  # text runs: the captions' / sentences' tokenizer
    extra_eval_splits: dict = dataclasses.field(default_factory=dict)
    embed: dict = dataclasses.field(default_factory=dict)  # jitted embedders, one per run
    notes: list = dataclasses.field(default_factory=list)  # printed when the run starts
    pretrained: dict | None = None  # {module name: params} loaded into the initial state
    # Evaluation during the run: {"train": data.val_train_split, "test": data.val_split}, or
    # None (it then scores the final evaluation's splits).
    val_splits: dict | None = None

    @property
    def text_tower(self):
        """The config of the run's text tower (``method.text`` for image-text methods)."""
        c = self.config
        return c.model.text if c.model.encoder == "text" else c.method.text

    def encode(self, texts):
        """Token ids (N, max_len) of ``texts`` as the run's text tower reads them (a BOS
        first for ``cls`` pooling)."""
        t = self.text_tower
        return self.tokenizer.encode(list(texts), t.max_len, add_bos=t.pooling == "cls")


class EvalContext:
    """What the evaluators see (``cl_jax.evaluation.registry``): each thing computed once.

    A split is named ``"train"`` (eval_train), ``"test"`` (eval_test) or by one of
    ``data.extra_eval_splits``. With ``validation`` (an evaluation during the run of a config
    with ``data.val_split``), ``"train"`` and ``"test"`` are ``val_train_split`` and
    ``val_split``.
    """

    def __init__(self, exp, state, validation=False, workdir=None):
        self.exp, self.state, self.method, self.mesh = exp, state, exp.method, exp.mesh
        self.workdir = workdir
        self.num_classes = exp.num_classes
        self.validation = validation and exp.val_splits is not None
        self.warnings = []
        self._cache = {}

    def split(self, which):
        exp = self.exp
        splits = {"train": exp.eval_train_split, "test": exp.eval_test_split,
                  **exp.extra_eval_splits, **(exp.val_splits if self.validation else {})}
        if which not in splits:
            raise ConfigError(f"An evaluator asks for the split {which!r}; the run has "
                              f"{', '.join(splits)} (data.extra_eval_splits adds more).")
        return splits[which]

    def _once(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def features(self, which):
        """(features, labels) of the image encoder on a split, or None; of the text encoder
        (``method.text_features``) on the first sentence of each example of a text split."""
        split = self.split(which)
        if split is None:
            return None
        if split.texts is not None:
            return self._once(("features", which), lambda: (
                embed_texts(self.exp, self.state, split.texts[0], "text_features"),
                np.asarray(split.read(np.arange(split.num_examples))["label"])))
        on_device = self.exp.config.eval.features_on_device

        def compute():
            found = extract_features(self.exp, self.state, split, on_device=on_device,
                                     positions=not on_device)
            if on_device:
                return found
            self._cache[("positions", which)] = found[2]
            return found[:2]

        return self._once(("features", which), compute)

    def targets(self, which):
        """The split's regression targets (``Split.targets``, name -> array) of the rows of
        ``features(which)`` (host features), or None."""
        split = self.split(which)
        if split is None or split.targets is None or self.exp.config.eval.features_on_device:
            return None
        self.features(which)
        rows = self._cache[("positions", which)]
        return {name: np.asarray(values)[rows] for name, values in split.targets.items()}

    def labelled_examples(self, which):
        """(indices, labels) of the readable labelled images of a random-access image split,
        in index order (within ``eval.max_train_examples`` for the training split), or
        None."""
        split = self.split(which)
        if split is None or split.texts is not None or not split.random_access:
            return None
        found = self.features(which)
        if isinstance(found, device_features.DeviceFeatures):  # row r is example r
            labels = np.asarray(found.labels)
            indices = np.arange(len(labels))
        else:
            labels, indices = np.asarray(found[1]), self._cache[("positions", which)]
        keep = labels >= 0
        return indices[keep], labels[keep]

    def training_batches(self, which, indices, global_batch, seed, crop_scale=(0.08, 1.0)):
        """Endless global (images, labels) batches of the examples ``indices`` of a
        random-access split, shuffled each epoch, each image a random crop (area
        ``crop_scale``, resized to ``eval.image_size``) flipped at random, normalised as
        the evaluation's: what SimCLR fine-tunes on."""
        c = self.exp.config
        view = data.ViewAugment(size=c.eval.image_size, crop_scale=tuple(crop_scale),
                                flip_prob=0.5, jitter_prob=0.0, grayscale_prob=0.0)
        subset = data.subset_split(self.split(which), indices)
        stream = data.train_dataset(subset, [view], seed=seed, global_batch=global_batch,
                                    mean=c.data.mean, std=c.data.std,
                                    color_space=c.data.color_space,
                                    process_index=jax.process_index(),
                                    process_count=jax.process_count())
        host = ({"image": b["views"][0], "label": b["label"]}
                for b in stream.as_numpy_iterator())
        for batch in pipeline.prefetch_to_device(host, self.exp.mesh):
            yield batch["image"], batch["label"]

    def predictions(self, which, predict, variables):
        """(predict(variables.params, variables.batch_stats, images), labels) over a split,
        images as the frozen features see them; on host."""
        fn = jax.jit(predict, out_shardings=parallel.batch_sharding(self.exp.mesh),
                     compiler_options=compile_options.for_run(self.exp.config))
        return extract_features(self.exp, variables, self.split(which), fn=fn)

    def thumbnails(self, which, count, size):
        """The first ``count`` images of an image split, centre-cropped and resized to
        ``size``, as uint8 (count, size, size, C); None for a stream or a text split."""
        split = self.split(which)
        if split is None or split.texts is not None or not split.random_access:
            return None

        def thumbnail(index):
            image = tf.image.convert_image_dtype(split.read(index)["image"], tf.float32)
            return tf.image.convert_image_dtype(data.augment.center_crop(image, size),
                                                tf.uint8, saturate=True)

        return self._once(("thumbnails", which, count, size), lambda: np.stack(
            [thumbnail(i).numpy() for i in range(count)]))

    def log_image(self, name, png):
        """A PNG (bytes) into the run's TensorBoard at this state's step."""
        if self.workdir is None or jax.process_index() != 0:
            return
        writer = tf.summary.create_file_writer(os.path.join(self.workdir, "tensorboard"))
        with writer.as_default(step=int(self.state.step)):
            tf.summary.image(name, tf.image.decode_png(png)[None])
        writer.close()

    def augmented_pairs(self, which, max_examples):
        """Features (host, (n, D) each) of two views of the first ``n`` (<= max_examples)
        images of an image split, augmented as the run's first two training views (colour
        ops on the host, seeded by ``config.seed``), or None."""
        split = self.split(which)
        if split is None or split.texts is not None or not split.random_access:
            return None
        c = self.exp.config
        views = data.view_augments(c.augment)[:2]
        if len(views) < 2:
            return None
        size = c.eval.batch_size
        count = min(max_examples, split.num_examples)
        subset = dataclasses.replace(split, num_examples=count, index_size=count)

        def compute():
            stream = data.train_dataset(subset, views, seed=c.seed, global_batch=size,
                                        mean=c.data.mean, std=c.data.std, shuffle_buffer=1,
                                        color_space=c.data.color_space,
                                        process_index=jax.process_index(),
                                        process_count=jax.process_count())
            embed, out = embedder(self.exp, "image_features"), [[], []]
            for _, host_batch in zip(range(-(-count // size)), stream.as_numpy_iterator(),
                                     strict=False):
                batch = parallel.to_global({"views": host_batch["views"][:2]}, self.exp.mesh)
                for view, found in zip(batch["views"], out, strict=True):
                    found.append(parallel.to_host(embed(self.state.params,
                                                        self.state.batch_stats, view)))
            return tuple(np.concatenate(found)[:count] for found in out)

        return self._once(("pairs", which, max_examples), compute)

    def sentence_pairs(self, which):
        """Embeddings of the two sentences of each pair of a text split and its scores
        (``a``, ``b``, ``scores``), or None. Each distinct sentence is embedded once: those
        are ``unique``, and ``rows`` the rows of ``a`` and ``b`` in it."""
        split = self.split(which)
        if split is None or split.texts is None or len(split.texts) < 2:
            return None

        def compute():
            texts, inverse = np.unique(np.asarray(split.texts[0] + split.texts[1], object),
                                       return_inverse=True)
            unique = embed_texts(self.exp, self.state, list(texts), "text_features")
            n = split.num_examples
            return {"a": unique[inverse[:n]], "b": unique[inverse[n:]], "unique": unique,
                    "rows": (inverse[:n], inverse[n:]), "scores": split.scores}

        return self._once(("pairs", which), compute)

    def image_text(self, which):
        """Image and caption embeddings of an image-text split, or None. With one caption per
        image, identical captions are one text and their images one group (several faces of
        one glyph name): an image finds its name, a name any of its images."""
        split = self.split(which)
        if split is None or not split.captions or self.exp.tokenizer is None:
            return None  # no captions held in memory (a stream), or no text tower

        def compute():
            images, labels, kept = extract_features(self.exp, self.state, split,
                                                    "embed_images", positions=True)
            texts, example = captions.captions_of(split)
            if len(texts) == split.num_examples:  # one caption each: one text per name
                texts, group = np.unique(texts, return_inverse=True)
                present = np.isin(np.arange(len(texts)), group[kept])
                return {"image_embeddings": images, "labels": labels,
                        "text_embeddings": embed_texts(self.exp, self.state, list(texts)),
                        "text_to_image": np.where(present, np.arange(len(texts)), -1),
                        "image_groups": group[kept]}
            row = np.full(split.num_examples, -1)
            row[kept] = np.arange(len(kept))  # unreadable images' captions match nothing
            return {"image_embeddings": images, "labels": labels,
                    "text_embeddings": embed_texts(self.exp, self.state, texts),
                    "text_to_image": row[example]}

        return self._once(("image_text", which), compute)

    def class_prompt_embeddings(self, which):
        """(classes, templates, D) text embeddings of the split's zero-shot prompts, or None."""
        split = self.split(which)
        if split is None or not split.class_names or not split.templates \
                or self.exp.tokenizer is None:
            return None
        prompts = [t.format(name) for name in split.class_names for t in split.templates]

        def compute():
            flat = embed_texts(self.exp, self.state, prompts)
            return flat.reshape(len(split.class_names), len(split.templates), -1)

        return self._once(("prompts", which), compute)


def caption_tokens(split, tokenizer, max_len):
    """The split's captions as token tables: (N, L) for one caption per example, else
    ((N, C, L), counts) with C the most captions of an example (the others padded)."""
    texts, example = captions.captions_of(split)
    tokens = tokenizer.encode(texts, max_len)
    if len(texts) == split.num_examples:
        return (tokens,)
    counts = np.bincount(example, minlength=split.num_examples)
    if counts.min() == 0:
        raise DataError(f"Example {int(np.argmin(counts))} of {split.name} has no caption; "
                        "every image of an image-text split needs at least one.")
    table = np.full((split.num_examples, counts.max(), max_len), tokenizer.pad_id, np.int32)
    slot = np.arange(len(texts)) - np.repeat(np.cumsum(counts) - counts, counts)
    table[example, slot] = tokens
    return table, counts


def validate(config):
    """Checks that need no data and no compilation; one clear message per problem."""
    if config.method.name not in methods.METHODS:
        raise ConfigError(f"Unknown method {config.method.name!r}; set --config.method.name to "
                          f"one of {', '.join(sorted(methods.METHODS))}.")
    if config.model.encoder not in models.ENCODERS:
        raise ConfigError(f"Unknown encoder {config.model.encoder!r}; set "
                          f"--config.model.encoder to one of {', '.join(models.ENCODERS)}.")
    method_cls = methods.METHODS[config.method.name]
    method_cls.validate(config)
    evaluation.check_evals(config.evals, ("train", "test", *config.data.extra_eval_splits))
    num_views = config.augment.num_global_views + config.augment.num_local_views
    if num_views < method_cls.min_views:
        raise ConfigError(f"{config.method.name} needs at least {method_cls.min_views} views; "
                          f"the config makes {num_views} (augment.num_global_views + "
                          "augment.num_local_views).")
    if config.augment.num_local_views and not method_cls.uses_local_views:
        raise ConfigError(f"{config.method.name} does not use multi-crop's local views; set "
                          "--config.augment.num_local_views=0 or pick a method that does "
                          "(swav, dino).")
    if config.grad_cache_chunk and not method_cls.supports_grad_cache:
        supported = sorted(n for n, m in methods.METHODS.items() if m.supports_grad_cache)
        raise ConfigError(f"{config.method.name} does not embed through GradCache; set "
                          f"--config.grad_cache_chunk=0 or pick one of {', '.join(supported)}.")
    if config.grad_cache_chunk < 0 or (config.grad_cache_chunk
                                       and config.batch_size % config.grad_cache_chunk):
        raise ConfigError(f"grad_cache_chunk={config.grad_cache_chunk} must divide the batch "
                          f"({config.batch_size}) into chunks; pick a divisor, or 0 for none.")
    check_digits_splits(config.data)
    check_color_space(config)
    check_frame_stacks(config)
    check_policy_augment(config.augment)
    if config.total_steps < 0 and config.num_epochs <= 0:
        raise ConfigError("Set --config.num_epochs > 0 or --config.total_steps >= 0.")
    for name, value, allowed in (("nonfinite", config.nonfinite, ("stop", "skip")),
                                 ("model.dtype", config.model.dtype, ("float32", "bfloat16")),
                                 ("cpu_dot_library", config.cpu_dot_library,
                                  compile_options.CPU_DOT_LIBRARIES),
                                 ("data.bad_images", config.data.bad_images, ("skip", "fail"))):
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got "
                              f"{value!r}; set --config.{name}={allowed[0]}.")


def check_frame_stacks(config):
    """The channels of the moving digits and of Craftax frames are stacked frames:
    ``data.channels`` must be ``cameras * frame_stack`` (greyscale digits) or ``3 *
    frame_stack`` (RGB Craftax), and no colour op may mix the frames of a stack."""
    d = config.data
    if d.source not in ("moving_digits", "craftax"):
        return
    if d.source == "moving_digits":
        channels, what = d.frame_stack * d.cameras, f"data.cameras={d.cameras} camera(s)"
    else:
        channels, what = d.frame_stack * 3, "3 colours"
    if d.channels != channels:
        raise ConfigError(f"{d.source} stacks data.frame_stack={d.frame_stack} frames of "
                          f"{what} on the channel axis, but data.channels is {d.channels}; "
                          f"set --config.data.channels={channels}.")
    for view in data.view_augments(config.augment):
        if view.jitter_prob or view.grayscale_prob or view.solarize_prob:
            raise ConfigError("Colour jitter, grayscale and solarize treat the channels as "
                              f"colours, but {d.source}'s channels are stacked frames; set the "
                              "views' jitter_prob, grayscale_prob and solarize_prob to 0.")


def check_policy_augment(a):
    """RandAugment / AutoAugment settings (``augment.randaugment_*``, ``augment.autoaugment``)."""
    from cl_jax.data import randaugment

    if a.randaugment_ops not in randaugment.OP_LISTS:
        raise ConfigError(f"augment.randaugment_ops is {a.randaugment_ops!r}; set it to one of "
                          f"{', '.join(map(repr, randaugment.OP_LISTS))}.")
    if a.autoaugment and a.autoaugment not in randaugment.POLICIES:
        raise ConfigError(f"augment.autoaugment is {a.autoaugment!r}; set it to 'imagenet' (the "
                          "learned ImageNet policy) or '' for none.")
    if not 0 <= a.randaugment_magnitude <= 30 or a.randaugment_num_ops < 0:
        raise ConfigError("augment.randaugment_magnitude must lie in [0, 30] and "
                          "augment.randaugment_num_ops be >= 0 (0: no RandAugment).")
    if a.randaugment_num_ops and a.autoaugment:
        raise ConfigError("Set either augment.randaugment_num_ops or augment.autoaugment, not "
                          "both.")


def check_color_space(config):
    """``data.color_space``: a known one; L*a*b* needs RGB images and the host's colour ops."""
    space, channels = config.data.color_space, config.data.channels
    if space not in data.COLOR_SPACES:
        raise ConfigError(f"data.color_space is {space!r}; set it to one of "
                          f"{', '.join(map(repr, data.COLOR_SPACES))}.")
    if space == "lab" and channels != 3:
        raise ConfigError(f"data.color_space='lab' converts RGB images, but data.channels is "
                          f"{channels} (source {config.data.source!r}); train on an RGB source "
                          "(e.g. --config=cmc:cifar10) or set --config.data.color_space=rgb.")
    if space == "lab" and config.augment.colour_on_device:
        raise ConfigError("data.color_space='lab' is converted on the host, after the colour "
                          "ops; set --config.augment.colour_on_device=False.")


def check_digits_splits(d):
    """The digits' own split names ('minitrain', 'minival'), the base config's defaults, with
    another source: one message naming the fields to set (the moving digits have the
    digits' splits)."""
    if d.source in ("digits", "moving_digits"):
        return
    fields = ("val_split", "val_train_split")  # an image folder's are paths; the rest unused
    if d.source != "folder":
        fields = ("train_split", "eval_train_split", "eval_test_split", *fields)
    fields = [f for f in fields if d[f] in ("minitrain", "minival")
              and (f != "val_train_split" or d.val_split)]
    if fields:
        fix = " ".join(f"--config.data.{f}={'' if f.startswith('val') else 'train'}"
                       for f in fields)
        raise ConfigError(f"data.{fields[0]}={d[fields[0]]!r} is a split of the embedded "
                          f"digits, not of source {d.source!r}; set {fix} (or a preset of the "
                          "source, e.g. --config=byol:cifar10).")


def check_indexable(config, train_split):
    """A memory-bank method keys on example indices: a split whose examples have them."""
    name, n = config.method.name, train_split.index_size
    if not n:
        raise ConfigError(
            f"{name} keeps a memory bank row per training example and needs example indices, "
            f"which {train_split.name} does not give (a streamed split without shard lengths "
            "or joining splits); set --config.data.cache_in_memory=True (a data set that fits "
            "in memory) or train on an image folder (--config.data.source=folder "
            "--config.data.train_dir=...).")
    if "num_examples" not in config.method:  # indices for per-example randomness only
        return
    if config.method.num_examples <= 0:
        config.method.num_examples = n
    elif config.method.num_examples != n:
        raise ConfigError(f"method.num_examples is {config.method.num_examples}, but "
                          f"{train_split.name} has {n} example indices; set "
                          f"--config.method.num_examples={n} (or 0 to use the split's size).")


def run_tokenizer(config, train_split, workdir, text):
    """The captions' or sentences' tokenizer: ``data.tokenizer_file``, the run's own
    (``workdir``), or one trained on the first ``data.tokenizer_captions`` training texts
    (saved in ``workdir`` by process 0). ``text``: the text tower's config."""
    count = config.data.tokenizer_captions
    if train_split.texts is not None:
        texts = lambda: text_data.sentences_of(train_split, count)
    else:
        texts = lambda: captions.first_captions(train_split, count)
    if workdir is None and not config.data.tokenizer_file:
        return tokenizer_lib.Tokenizer.from_bytes(
            tokenizer_lib.train_model_proto(texts(), text.vocab_size))
    return tokenizer_lib.tokenizer_for_run(workdir or "", texts, text.vocab_size,
                                           config.data.tokenizer_file,
                                           write=jax.process_index() == 0)


def with_caption_tokens(split, tokenizer, max_len):
    """``split`` whose examples carry their captions' token ids: from tables made once for a
    random-access split, by tensorflow-text's sentencepiece op for a stream."""
    if split.random_access:
        return data.with_tokens(split, *caption_tokens(split, tokenizer, max_len))
    encode = captions.caption_tokenizer_op(tokenizer, max_len)

    def tokenized(decode):
        def decode_with_tokens(record):
            example = dict(decode(record))
            if "caption" in example:
                example["tokens"] = encode(example.pop("caption"))
            else:  # several captions: the pipeline draws one
                texts = example.pop("captions")
                example.update(tokens=encode(texts), num_captions=tf.shape(texts)[0])
            return example

        return decode_with_tokens if decode is not None else None

    return dataclasses.replace(split, decode=tokenized(split.decode),
                               decode_encoded=tokenized(split.decode_encoded))


def create_experiment(config, mesh=None, workdir=None) -> Experiment:
    """The run ``config`` describes; ``workdir`` keeps what the run makes once (a tokenizer)."""
    validate(config)
    mesh = mesh or parallel.create_mesh()
    parallel.local_batch_size(config.batch_size, mesh)  # a clear error if it does not divide
    parallel.local_batch_size(config.eval.batch_size, mesh, "eval.batch_size")
    method_cls = methods.METHODS[config.method.name]
    sentences = "sentences" in method_cls.inputs
    if sentences:
        load = lambda purpose, name=None: text_data.load_text_split(config, purpose, name)
    else:
        load = lambda purpose, name=None: data.load_split(config.data, purpose, name)
    train_split, eval_train, eval_test = load("train"), load("eval_train"), load("eval_test")
    extra = {name: load("eval_extra", name) for name in config.data.extra_eval_splits}
    val_splits = None
    if config.data.val_split:
        val_train = config.data.val_train_split
        val_splits = {"train": load("eval_extra", val_train) if val_train else eval_train,
                      "test": load("eval_extra", config.data.val_split)}
    labelled = [s for s in (eval_train, train_split) if s is not None and s.num_classes]
    num_classes = labelled[0].num_classes if labelled else 0
    if method_cls.needs_labels and not train_split.num_classes:
        raise ConfigError(
            f"{config.method.name} needs labels, but {train_split.name} has none; train on a "
            "labelled split (an image folder with one subfolder per class, or a TFDS split "
            "with labels) or pick a self-supervised method.")

    if "index" in method_cls.inputs:
        check_indexable(config, train_split)
        method_cls.validate(config)  # again, now that num_examples is the split's size
    tokenizer, notes, encoder, pretrained = None, [], None, None
    if sentences:
        notes = [f"{split.name}: {split.provenance['skipped']}"
                 for split in (train_split, eval_train, eval_test, *extra.values())
                 if split is not None and (split.provenance or {}).get("skipped")]
        if config.model.text.init_from_hf:
            encoder, pretrained, tokenizer, info = pretrained_text_tower(config)
            notes.append(f"text tower: the {info['model_type']} of {info['directory']} "
                         f"({info['num_layers']} layers, width {info['hidden_size']}, "
                         f"{info['vocab_size']} tokens)")
        tokenizer, train_split, truncated = sentence_data(config, method_cls, train_split,
                                                          workdir, tokenizer)
        notes += truncated
    if "tokens" in method_cls.inputs:
        if train_split.captions is None:  # a stream's are () (read from its records)
            raise ConfigError(
                f"{config.method.name} trains on image-text pairs, but {train_split.name} has "
                "no captions; set --config.data.source=glyphs (the embedded set) or a "
                "captioned source.")
        tokenizer = run_tokenizer(config, train_split, workdir, config.method.text)
        config.method.text.update(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)
        train_split = with_caption_tokens(train_split, tokenizer, config.method.text.max_len)
    steps_per_epoch = train_split.num_examples / config.batch_size
    total_steps = config.total_steps
    if total_steps < 0:
        total_steps = math.ceil(config.num_epochs * steps_per_epoch)
    probe_classes = num_classes if config.online_probe and train_split.num_classes else 0
    method, schedule, tx = create_method_and_optimizer(config, probe_classes, total_steps,
                                                       steps_per_epoch, encoder)
    method.mesh, method.grad_cache_chunk = mesh, config.grad_cache_chunk
    return Experiment(config, mesh, train_split, eval_train, eval_test, num_classes,
                      steps_per_epoch, total_steps, method, schedule, tx, tokenizer, extra,
                      notes=notes, pretrained=pretrained, val_splits=val_splits)


def pretrained_text_tower(config):
    """``(encoder, {"encoder": params}, tokenizer, info)`` of ``model.text.init_from_hf``; the
    text tower's fields become the checkpoint's (its vocabulary, width, pad id)."""
    from cl_jax.models import hf

    text = config.model.text
    module, params, tokenizer, info = hf.load_hf_encoder(
        text.init_from_hf, pooling=text.pooling, dropout=text.dropout_rate)
    if text.max_len > module.max_len:
        raise ConfigError(f"model.text.max_len={text.max_len} exceeds the {module.max_len} "
                          f"positions of {text.init_from_hf}; lower it.")
    text.update(vocab_size=module.vocab_size, width=module.hidden_size,
                depth=module.num_layers, num_heads=module.num_heads, pad_id=module.pad_id)
    return module, {"encoder": params}, tokenizer, info


def sentence_data(config, method_cls, train_split, workdir, tokenizer=None):
    """A sentence method's tokenizer (the run's sentencepiece one unless ``tokenizer`` is
    given), its training split with token ids, and what to tell the user about the data
    (sentences truncated to the text tower's ``max_len``)."""
    k, counts = len(train_split.texts), method_cls.sentence_counts(config)
    if k not in counts:
        raise ConfigError(
            f"{config.method.name} trains on {' or '.join(map(str, counts))} "
            f"sentence(s) per example; {train_split.name} has {k}. Pick another data.source / "
            "data.train_split (e.g. data.nli_form) or method.")
    text = config.model.text
    if tokenizer is None:
        tokenizer = run_tokenizer(config, train_split, workdir, text)
        text.update(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)
    split, truncated = text_data.with_sentence_tokens(train_split, tokenizer, text.max_len,
                                                      add_bos=text.pooling == "cls")
    notes = [f"{truncated} of {k * split.num_examples} training sentences are longer than "
             f"{text.max_len} tokens and were truncated (model.text.max_len)."] if truncated \
        else []
    return tokenizer, split, notes


def state_init_fn(exp: Experiment):
    sample = exp.method.sample_inputs(exp.config)
    return lambda rng: init_train_state(exp.method, exp.tx, rng, sample)


def initial_state(exp: Experiment):
    """The freshly initialised train state, replicated (or sharded) over the mesh; with
    ``model.init_from`` its ``model.init_modules`` come from that run's latest checkpoint."""
    c = exp.config
    state = jax.jit(state_init_fn(exp), out_shardings=state_sharding(exp))(
        jax.random.key(c.seed))
    if exp.pretrained:  # a pretrained text tower (model.text.init_from_hf)
        params = dict(jax.device_get(state.params), **exp.pretrained)
        state = state.replace(params=params, opt_state=exp.tx.init(params))
        state = jax.device_put(state, state_sharding(exp))
    if not c.model.init_from:
        return state
    params, batch_stats = load_modules(c.model.init_from, tuple(c.model.init_modules),
                                       jax.device_get(state.params),
                                       jax.device_get(state.batch_stats))
    _, extra_rng = jax.random.split(jax.random.key(c.seed))  # as init_train_state's
    extra = exp.method.init_extra(params, batch_stats, extra_rng)
    state = state.replace(params=params, batch_stats=batch_stats, opt_state=exp.tx.init(params),
                          extra=extra)
    return jax.device_put(state, state_sharding(exp))


def state_sharding(exp: Experiment):
    """The train state's shardings: replicated, or FSDP-style with ``config.shard_state``."""
    abstract = jax.eval_shape(state_init_fn(exp), jax.random.key(exp.config.seed))
    return parallel.state_sharding(abstract, exp.mesh, exp.config.shard_state)


def jit_train_step(exp: Experiment):
    """The jitted train step: state (donated) and global batch -> state, metrics."""
    shardings = state_sharding(exp)
    step = make_train_step(exp.method, exp.tx, exp.schedule, exp.config.seed,
                           augment=device_augment.from_config(exp.config))
    return jax.jit(step,
                   in_shardings=(shardings, parallel.batch_sharding(exp.mesh)),
                   out_shardings=(shardings, parallel.replicated(exp.mesh)), donate_argnums=0,
                   compiler_options=compile_options.for_run(exp.config))


def embedder(exp, name):
    """``method.<name>(variables, x)`` jitted once per run, its output sharded on the batch."""
    if name not in exp.embed:
        fn = getattr(exp.method, name)
        exp.embed[name] = jax.jit(
            lambda params, batch_stats, x: fn({"params": params, "batch_stats": batch_stats}, x),
            out_shardings=parallel.batch_sharding(exp.mesh),
            compiler_options=compile_options.for_run(exp.config))
    return exp.embed[name]


def embed_texts(exp, state, texts, fn="embed_texts"):
    """``method.<fn>`` (``embed_texts``: an image-text model's text embeddings) of every text,
    tokenised with the run's tokenizer, on host."""
    tokens = exp.encode(texts)
    size = exp.config.eval.batch_size
    padded = np.pad(tokens, ((0, -len(tokens) % size), (0, 0)), constant_values=0)
    embed = embedder(exp, fn)
    local = size // jax.process_count()
    mine = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
    out = []
    for start in range(0, len(padded), size):
        rows = parallel.to_global({"t": padded[start:start + size][mine]}, exp.mesh)["t"]
        out.append(parallel.to_host(embed(state.params, state.batch_stats, rows)))
    return np.concatenate(out)[:len(tokens)]


def extract_features(exp: Experiment, state, split, fn="image_features", positions=False,
                     on_device=False):
    """``method.<fn>`` (the encoder's features; or ``fn(params, batch_stats, images)``, jitted)
    of a whole split, no augmentation:
    (features, labels), on host; with ``positions``, also each row's place in the split (a
    random-access split's index; unreadable images are left out). With ``on_device``, a
    ``DeviceFeatures``: the features stay on the devices, split by rows."""
    c = exp.config
    max_examples = c.eval.max_train_examples if split is exp.eval_train_split or split is (
        exp.val_splits or {}).get("train") else -1
    batches = pipeline.eval_batches(
        split, bad_images=c.data.bad_images, size=c.eval.image_size,
        crop_fraction=c.eval.crop_fraction, mean=c.data.mean, std=c.data.std,
        global_batch=c.eval.batch_size, process_index=jax.process_index(),
        process_count=jax.process_count(), max_examples=max_examples,
        color_space=c.data.color_space)
    embed = embedder(exp, fn) if isinstance(fn, str) else fn
    if on_device:
        count = split.num_examples if max_examples < 0 else min(max_examples,
                                                                 split.num_examples)
        buffer = device_features.FeatureBuffer(exp.mesh, -(-count // c.eval.batch_size))
        for host_batch in batches:
            batch = parallel.to_global(host_batch, exp.mesh)
            buffer.add(embed(state.params, state.batch_stats, batch["image"]),
                       parallel.to_host(batch["label"]), parallel.to_host(batch["mask"]))
        return buffer.result()
    features, labels, masks = [], [], []
    for host_batch in batches:
        batch = parallel.to_global(host_batch, exp.mesh)
        features.append(parallel.to_host(embed(state.params, state.batch_stats,
                                               batch["image"])))
        labels.append(parallel.to_host(batch["label"]))
        masks.append(parallel.to_host(batch["mask"]))
    keep = np.concatenate(masks) > 0
    found = np.concatenate(features)[keep], np.concatenate(labels)[keep]
    return (*found, np.flatnonzero(keep)) if positions else found


def evaluate(exp: Experiment, state, step=None, final=True, workdir=None):
    """The evaluators of ``config.evals`` due at ``step`` (all of them when ``final``); before
    the end of the run they score the validation splits where the config has them. Those
    that write files (pictures) write them into ``workdir``, if given."""
    c = exp.config
    step = int(state.step) if step is None else step
    context = EvalContext(exp, state, validation=not final, workdir=workdir)
    results = evaluation.run_evaluators(context, c.evals, step, final, c.eval_every_steps)
    if jax.process_index() == 0:
        for warning in context.warnings:
            print(f"warning at step {step}: {warning}", flush=True)
    return results


SUMMARY = (("knn_top1", "kNN top-1"), ("linear_top1", "linear top-1"),
           ("fewshot_top1", "few-label linear top-1"))


def summary_line(step, results, scored="Evaluation"):
    if not results:
        return (f"step {step}: nothing to evaluate (no labelled evaluation data, or every "
                "evaluator off).")
    named = dict(SUMMARY)
    parts = []
    for key, value in results.items():
        if key.endswith("_std") and key[:-len("_std")] in results:
            continue  # shown as "± std" beside its mean
        text = f"{named.get(key, key)} {value:.4f}"
        if f"{key}_std" in results:
            text += f" ± {results[key + '_std']:.4f}"
        parts.append(text)
    return f"{scored} at step {step}: " + " | ".join(parts)


def save_config(exp, workdir):
    """The resolved config, and what a generated data set was made from (data.json)."""
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(exp.config.to_json_best_effort(indent=2))
        if exp.train_split.provenance is not None:
            with open(os.path.join(workdir, "data.json"), "w") as f:
                json.dump(exp.train_split.provenance, f, indent=2)


def write_eval(workdir, step, results):
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "eval.json"), "w") as f:
            json.dump({"step": int(step), **results}, f, indent=2)


class NonFiniteError(UserError):
    """The loss or an update became NaN or infinite and ``config.nonfinite == 'stop'``."""


class NonFiniteMonitor:
    """Acts on the step's count of skipped non-finite steps: warns ('skip') or stops ('stop')."""

    def __init__(self, policy, state, checkpointer, writer):
        self.policy, self.checkpointer, self.writer = policy, checkpointer, writer
        self.seen = int(state.nonfinite_steps)

    def check(self, step, count, state):
        count = int(count)
        if count <= self.seen:
            return
        first = int(state.first_nonfinite_step)
        self.seen = count
        if self.policy == "skip":
            self.writer.print(f"step {step}: skipped {count} step(s) with a NaN or infinite "
                              f"loss or update so far (the first at step {first}).")
            return
        latest = self.checkpointer.latest_step
        kept = (f"the last good checkpoint is step {latest} in {self.checkpointer.directory}"
                if latest is not None else "there is no checkpoint yet")
        raise NonFiniteError(
            f"the loss or an update became NaN or infinite at step {first} ({count} such "
            f"step(s) by step {step}); stopped without applying it or checkpointing after it, "
            f"and {kept}. Lower --config.optim.base_lr or lengthen the warmup, check the "
            "data, or set --config.nonfinite=skip to skip such steps and train on.")


def train_and_evaluate(config, workdir, mesh=None):
    """Trains (or resumes) in ``workdir`` and returns the final evaluation; see the module."""
    exp = create_experiment(config, mesh, workdir)
    checkpoint_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    saved = resume.load_run_config(checkpoint_dir)
    config_json = exp.config.to_json_best_effort(indent=2)
    if saved is not None and os.path.isdir(checkpoint_dir) and any(
            name.isdigit() for name in os.listdir(checkpoint_dir)):
        resume.check_config_change(saved, json.loads(config_json), workdir)
    save_config(exp, workdir)
    checkpointer = Checkpointer(checkpoint_dir, exp.config.checkpoint_every_steps,
                                max_to_keep=exp.config.keep_checkpoints,
                                asynchronous=exp.config.checkpoint_async)
    if jax.process_index() == 0:
        resume.save_run_config(checkpoint_dir, config_json)
    try:
        return train_loop(exp, workdir, checkpointer)
    finally:
        checkpointer.close()  # waits for a save in flight: the last checkpoint is complete


def caption_augment(exp):
    """The host's token augmentation of captions (``augment.caption_word_dropout``) or of
    every sentence (``augment.word_dropout``, ``synonym_replace``, ``synonym_insert``,
    ``word_shuffle_window``, in that order), or None."""
    a, t = exp.config.augment, exp.tokenizer
    if t is None:
        return None
    if exp.train_split.texts is None:
        rate, replace, insert, window = a.caption_word_dropout, 0.0, 0.0, 0
    else:
        rate, replace, insert, window = (a.word_dropout, a.synonym_replace, a.synonym_insert,
                                         a.word_shuffle_window)
    if rate <= 0 and replace <= 0 and insert <= 0 and window <= 0:
        return None
    starts, keep = text_augment.word_start_table(t), (t.bos_id, t.eos_id)
    table = None
    if replace > 0 or insert > 0:
        from cl_jax.data import wordnet

        table = text_augment.synonym_table(t, wordnet.synonyms(wordnet.load()))

    def augment(tokens, seed):
        seeds = [tf.random.experimental.stateless_fold_in(seed, i) for i in range(1, 4)]
        tokens = text_augment.word_dropout(tokens, seed, rate, starts, keep, t.pad_id)
        if table is not None:
            tokens = text_augment.synonym_replace(tokens, seeds[0], replace, table, starts,
                                                  t.pad_id)
            tokens = text_augment.synonym_insert(tokens, seeds[1], insert, table, starts, keep,
                                                 t.pad_id)
        return text_augment.word_shuffle(tokens, seeds[2], window, starts, keep, t.pad_id)

    return augment


def train_loop(exp: Experiment, workdir, checkpointer):
    c = exp.config
    state = checkpointer.restore_latest(initial_state(exp))
    start_step = int(state.step)
    if jax.process_index() == 0:
        resume.truncate_metrics(workdir, start_step)
        resume.truncate_tensorboard(workdir, start_step)
    writer = MetricWriter(workdir, exp.total_steps, c.batch_size,
                          "examples" if exp.train_split.texts is not None else "images")
    writer.print(f"{c.method.name}: {exp.train_split.name} ({exp.train_split.num_examples} "
                 f"examples), batch {c.batch_size} on {exp.mesh.size} device(s)"
                 + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else "")
                 + f", {exp.total_steps} steps"
                 + (f", resuming at step {start_step}" if start_step else ""))
    for note in exp.notes:
        writer.print(note)

    train_step = jit_train_step(exp)
    process = dict(process_index=jax.process_index(), process_count=jax.process_count())

    def dataset_from(step, bad_indices=()):
        return data.train_dataset(
            exp.train_split, data.view_augments(c.augment), seed=c.seed,
            global_batch=c.batch_size, start_step=step, mean=c.data.mean, std=c.data.std,
            shuffle_buffer=c.data.shuffle_buffer, bad_indices=bad_indices,
            colour=not c.augment.colour_on_device, fused_crop=c.data.fused_crop,
            text_augment=caption_augment(exp), color_space=c.data.color_space, **process)

    host_batches = data.HostBatches(dataset_from(start_step), exp.train_split, seed=c.seed,
                                    global_batch=c.batch_size, start_step=start_step,
                                    bad_images=c.data.bad_images, rebuild=dataset_from,
                                    **process)
    batches = data.prefetch_to_device(host_batches, exp.mesh)
    nonfinite = NonFiniteMonitor(c.nonfinite, state, checkpointer, writer)

    if start_step < exp.total_steps:  # compile first, so all processes start the run together
        first_batch = next(batches)
        train_step = parallel.compile_together(train_step, state, first_batch)
        batches = itertools.chain([first_batch], batches)

    # A logging step's metrics are copied to the host in the background and written once the
    # next step is dispatched, so logging never leaves the device idle.
    pending = []

    def log_pending():
        for logged_step, logged in pending:
            logged = jax.device_get(logged)
            nonfinite.check(logged_step, logged["nonfinite_steps"], state)
            if host_batches.bad_images.indices:
                logged["bad_images"] = len(host_batches.bad_images.indices)
            writer.log_train(logged_step, logged)
        pending.clear()

    # Evaluations during the run: on the validation splits ("val/" keys) where there are some.
    tag, scored = "eval", "Evaluation"
    if exp.val_splits is not None:
        tag, scored = "val", f"Validation on {exp.val_splits['test'].name}"
    step = start_step
    with PreemptionGuard() as guard:
        while step < exp.total_steps:
            state, metrics = train_step(state, next(batches))
            step += 1
            log_pending()
            if step % c.log_every_steps == 0 or step == exp.total_steps:
                for leaf in jax.tree.leaves(metrics):
                    leaf.copy_to_host_async()
                pending.append((step, metrics))
            if step < exp.total_steps:
                results = evaluate(exp, state, step, final=False)
                if results:
                    log_pending()
                    writer.write(step, {f"{tag}/{k}": v for k, v in results.items()})
                    writer.print(summary_line(step, results, scored))
                    writer.reset_timer()
            stop = guard.should_stop(step)
            if checkpointer.due(step) or stop:
                log_pending()
                nonfinite.check(step, state.nonfinite_steps, state)
                checkpointer.save(step, state, force=True)
            if stop:
                writer.print(f"{guard.requested} received: saved a checkpoint at step {step} "
                             f"in {workdir}; rerun the same command to resume.")
                writer.close()
                return None

    log_pending()
    nonfinite.check(step, state.nonfinite_steps, state)
    checkpointer.save(step, state, force=True)
    results = evaluate(exp, state, workdir=workdir)
    writer.write(step, {f"eval/{k}": v for k, v in results.items()})
    write_eval(workdir, step, results)
    writer.print(summary_line(step, results))
    writer.close()
    return results
