"""Evaluators declared in the config, as big_vision's ``config.evals``.

``config.evals`` maps a name to a ConfigDict with a ``type`` from ``EVALUATORS``, a cadence
``every_steps`` (0: the run's ``eval_every_steps``; -1: only at the end of the run), an
optional ``prefix`` for its result keys (two evaluators of one type on different splits) and
the evaluator's own settings, e.g. the ``split`` it scores. An evaluator is a function
``(context, settings) -> {key: number}``; the context gives it what it needs, computed once
per evaluation round and shared:

- ``context.features(which)``: ``(features, labels)`` of the frozen image encoder on the
  evaluation's ``"train"`` or ``"test"`` split (NumPy; labels -1 where unknown), or None;
- ``context.image_text(which)``: image and caption embeddings of an image-text split
  (``image_embeddings``, ``labels``, ``text_embeddings``, ``text_to_image``), or None;
- ``context.class_prompt_embeddings(which)``: (classes, templates, D) embeddings of the
  split's zero-shot prompts, or None;
- ``context.augmented_pairs(which, n)``: features of two augmented views (the run's first
  two training views) of the split's first ``n`` images, or None;
- ``context.thumbnails(which, n, size)``: the split's first ``n`` images as uint8
  (n, size, size, C), or None (a stream, a text split);
- ``context.labelled_examples(which)``: (indices, labels) of a random-access image split's
  labelled images; ``context.training_batches(which, indices, batch, seed)``: endless
  cropped-and-flipped global (images, labels) batches of them; ``context.predictions(which,
  predict, variables)``: ``predict(params, batch_stats, images)`` over a split (fine-tuning);
- ``context.targets(which)``: the split's regression targets (``Split.targets``) of the
  rows of ``features(which)``, or None;
- ``context.split(which)``; ``context.num_classes``; ``context.method``, ``context.state``
  and ``context.mesh``; ``context.workdir`` (None when the run has none);
  ``context.log_image(name, png)``, a PNG into TensorBoard; ``context.warnings``, lines an
  evaluator wants in the log.

An evaluator returns {} when the run has nothing it can score (no labels, no text tower).
Adding one is a function with ``@evaluator("name")``. The type ``"none"`` turns an evaluator
off (``--config.evals.fewshot.type=none``).
"""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from cl_jax import mixing
from cl_jax.errors import ConfigError
from cl_jax.evaluation import collapse, device_features, pictures
from cl_jax.evaluation import finetune as finetuning
from cl_jax.evaluation.device_features import DeviceFeatures
from cl_jax.evaluation.knn import knn_accuracy
from cl_jax.evaluation.linear import fewshot_accuracy, linear_accuracy, ridge_r2

EVALUATORS = {}
OFF = "none"  # the type of an evaluator that is switched off


def evaluator(name):
    """Registers ``fn(context, settings) -> dict`` as the evaluator type ``name``."""

    def register(fn):
        EVALUATORS[name] = fn
        return fn

    return register


def probe_splits(settings):
    """The splits a kNN / probe evaluator fits on and scores: its ``train_split`` and
    ``split`` ("train" and "test" unless set: another data set's for a transfer probe)."""
    return settings.get("train_split", "train"), settings.get("split", "test")


def num_classes(context, settings):
    """The classes of the evaluator's splits: the run's, or a transfer split's own."""
    if probe_splits(settings) == ("train", "test"):
        return context.num_classes
    return max(context.split(name).num_classes for name in probe_splits(settings))


def labelled_features(context, settings):
    """(train features, train labels, test features, test labels) of ``probe_splits``, the
    training examples without a label (-1) left out, or (train, test) ``DeviceFeatures``
    (their rows without a label take no part); None when the run has no labelled
    evaluation data."""
    train, test = (context.features(name) for name in probe_splits(settings))
    if train is None or test is None or not num_classes(context, settings):
        return None
    if isinstance(train, DeviceFeatures):
        return (train, test) if train.num_labelled else None
    (x, y), (xt, yt) = train, test
    keep = np.asarray(y) >= 0
    return x[keep], y[keep], xt, yt


def probe_steps(settings, num_examples):
    """Optimisation steps of a linear probe: ``epochs`` over the data if >= 0, else ``steps``."""
    if settings.epochs >= 0:
        return max(1, math.ceil(settings.epochs * num_examples / settings.batch_size))
    return settings.steps


def probe_options(settings, num_examples):
    return dict(steps=probe_steps(settings, num_examples), batch_size=settings.batch_size,
                lr=settings.lr, weight_decay=settings.weight_decay)


@evaluator("knn")
def knn(context, settings):
    """Weighted kNN top-1 (Wu et al. 2018): ``knn_top1``; the training features split over
    the devices of ``context.mesh`` (each holds N/d rows) when it has several."""
    data, classes = labelled_features(context, settings), num_classes(context, settings)
    if data is None:
        return {}
    if len(data) == 2:
        return {"knn_top1": device_features.knn_top1(*data, classes, settings.k,
                                                     settings.temperature)}
    return {"knn_top1": knn_accuracy(*data, classes, k=settings.k,
                                     temperature=settings.temperature,
                                     mesh=getattr(context, "mesh", None))}


@evaluator("linear")
def linear(context, settings):
    """Linear probe on every labelled training feature: ``linear_top1``."""
    data, classes = labelled_features(context, settings), num_classes(context, settings)
    if data is None:
        return {}
    if len(data) == 2:
        return {"linear_top1": device_features.linear_top1(
            *data, classes, **probe_options(settings, data[0].num_labelled))}
    return {"linear_top1": linear_accuracy(*data, classes,
                                           **probe_options(settings, len(data[0])))}


@evaluator("fewshot")
def fewshot(context, settings):
    """Linear probe on ``per_class`` labels per class, mean and std over ``draws`` draws:
    ``fewshot_top1``, ``fewshot_top1_std``."""
    data, classes = labelled_features(context, settings), num_classes(context, settings)
    if data is None:
        return {}
    subset = settings.per_class * classes
    fewshot = device_features.fewshot_top1 if len(data) == 2 else fewshot_accuracy
    mean, std = fewshot(*data, classes, per_class=settings.per_class,
                        draws=settings.draws, **probe_options(settings, subset))
    return {"fewshot_top1": mean, "fewshot_top1_std": std}


@evaluator("regression")
def regression(context, settings):
    """Ridge regression (``alpha``) from frozen features of each regression target of the
    splits (``Split.targets``: the moving digits' ``position`` and ``velocity``): the test
    R^2 with every training example, ``<target>_r2``, and with ``few_examples`` of them
    (mean and std over ``draws`` draws), ``fewshot_<target>_r2`` and ``..._std``. {} for
    splits without targets or features kept on the devices."""
    names = probe_splits(settings)
    found = [context.features(name) for name in names]
    targets = [context.targets(name) for name in names]
    if any(f is None or isinstance(f, DeviceFeatures) for f in found) or not all(targets):
        return {}
    (x, _), (xt, _) = found
    results = {}
    for key in targets[0]:
        y, yt = targets[0][key], targets[1][key]
        results[f"{key}_r2"] = ridge_r2(x, y, xt, yt, settings.alpha)
        few = [np.random.RandomState(seed).choice(len(x), settings.few_examples, replace=False)
               for seed in range(settings.draws)] if settings.few_examples < len(x) else []
        if few:
            scores = [ridge_r2(x[rows], y[rows], xt, yt, settings.alpha) for rows in few]
            results[f"fewshot_{key}_r2"] = float(np.mean(scores))
            results[f"fewshot_{key}_r2_std"] = float(np.std(scores))
    return results


def fraction_name(fraction):
    """``0.01`` -> ``"1pct"``: the suffix of a fine-tuning result."""
    return f"{fraction * 100:g}pct"


@evaluator("finetune")
def finetune(context, settings):
    """SimCLR's semi-supervised protocol (``cl_jax.evaluation.finetune``): the encoder and a
    zero-initialised linear head fine-tuned on a class-balanced draw of each of ``fractions``
    of the labelled training images for its ``epochs``, scored on the test split:
    ``finetune_top1_1pct``, ``finetune_top1_10pct``, ... Random-access image splits only."""
    train_name, test_name = probe_splits(settings)
    classes = num_classes(context, settings)
    found = context.labelled_examples(train_name) if classes else None
    if found is None or not len(found[0]):
        return {}
    indices, labels = found
    multiple = math.lcm(context.mesh.size, jax.process_count())
    variables = {"params": context.state.params, "batch_stats": context.state.batch_stats}
    results, seed = {}, settings.get("seed", 0)
    predict = finetuning.predictor(context.method)  # one function: one compilation
    for i, (fraction, epochs) in enumerate(zip(settings.fractions, settings.epochs,
                                               strict=True)):
        rows = finetuning.balanced_subset(labels, fraction, seed + i)
        batch = finetuning.global_batch_size(settings.batch_size, len(rows), multiple)
        batches = context.training_batches(train_name, indices[rows], batch, seed + i,
                                           settings.crop_scale)
        model, _ = finetuning.finetune(
            context.method, variables, batches, classes,
            steps=max(1, math.ceil(epochs * len(rows) / batch)),
            lr=finetuning.learning_rate(settings, batch), momentum=settings.momentum,
            nesterov=settings.nesterov, weight_decay=settings.weight_decay, mix=settings.mix,
            mix_alpha=settings.mix_alpha, seed=seed + i)
        predicted, truth = context.predictions(test_name, predict, model)
        scored = truth >= 0
        results[f"finetune_top1_{fraction_name(fraction)}"] = float(
            np.mean(predicted[scored] == truth[scored])) if scored.any() else 0.0
    return results


@evaluator("collapse")
def collapse_monitors(context, settings):
    """Collapse monitors of the frozen features of ``split`` (at most ``max_examples`` rows):
    ``embedding_std`` (SimSiam's std of the L2-normalised features, about 1/sqrt(D) when
    healthy; here of the features centred on their mean first, since an encoder's features
    after a ReLU all lie in one orthant, where SimSiam's projector outputs do not),
    ``rankme`` (Garrido et al. 2023), ``uniformity`` and, on two augmented views of those
    images made as for training, ``alignment`` (Wang & Isola 2020); see
    ``cl_jax.evaluation.collapse``. A warning joins the log when ``embedding_std`` falls
    below ``warn_below`` x 1/sqrt(D)."""
    found = context.features(settings.get("split", "test"))
    if found is None:
        return {}
    if isinstance(found, DeviceFeatures):  # its labelled rows: no padding, no unreadable
        rows = np.flatnonzero(found.labels >= 0)[:settings.max_examples]
        if not len(rows):
            return {}
        features = device_features.gather_rows(found.values, jnp.asarray(rows, jnp.int32),
                                               mesh=found.mesh)
    else:
        features = found[0][:settings.max_examples]
    pairs = context.augmented_pairs(settings.get("split", "test"), settings.max_examples)
    features = jnp.asarray(features)
    results = {k: float(v) for k, v in collapse.collapse_metrics(features).items()}
    results["embedding_std"] = float(collapse.embedding_std(features - features.mean(0)))
    if pairs is not None:
        results["alignment"] = float(collapse.alignment(*map(jnp.asarray, pairs)))
    warning = collapse.collapse_warning(results, features.shape[-1], settings.warn_below)
    if warning:
        context.warnings.append(warning)
    return results


@evaluator("pictures")
def pictures_of_the_embedding(context, settings):
    """Pictures of the features of ``split`` (at most ``max_examples`` rows), written by
    process 0 under ``workdir/plots/`` and into TensorBoard (``cl_jax.evaluation.pictures``):
    ``embedding_step<N>.png``, a 2-D ``map`` (``auto``: UMAP when installed, else t-SNE)
    coloured by label; ``neighbours_step<N>.png``, ``queries`` images each with its
    ``neighbours`` nearest; the projector's files. Returns no numbers."""
    workdir, which = getattr(context, "workdir", None), settings.get("split", "test")
    found = context.features(which) if workdir else None
    if found is None:
        return {}
    n = settings.max_examples
    if isinstance(found, DeviceFeatures):  # gathered by every process: a collective
        rows = np.flatnonzero(found.labels >= 0)[:n]
        features = device_features.gather_rows(found.values, jnp.asarray(rows, jnp.int32),
                                               mesh=found.mesh)
        features = np.asarray(features.addressable_data(0))  # replicated: any copy
        labels, complete = found.labels[rows], False
    else:
        features, labels = np.asarray(found[0][:n]), np.asarray(found[1][:n])
        complete = len(found[0]) == context.split(which).num_examples  # row i is image i
    if len(features) < 4 or jax.process_index() != 0:
        return {}
    step = int(context.state.step)
    folder = os.path.join(workdir, "plots")
    os.makedirs(folder, exist_ok=True)
    coords, made_by = pictures.embedding_map(features, settings.map, settings.get("seed", 0))
    split = context.split(which)
    names = tuple(getattr(split, "class_names", ()) or ())
    png = pictures.plot_map(os.path.join(folder, f"embedding_step{step}.png"), coords, labels,
                            f"{made_by} of {len(features)} {split.name} features, step {step}",
                            names)
    context.log_image("pictures/embedding", png)
    cell = settings.get("thumbnail_size", 32)
    images = context.thumbnails(which, len(features), cell) if complete else None
    if images is not None:
        queries = np.linspace(0, len(features) - 1, settings.queries).astype(int)
        found = pictures.nearest_neighbours(features, queries, settings.neighbours)
        png = pictures.plot_neighbours(os.path.join(folder, f"neighbours_step{step}.png"),
                                       images, queries, found, labels)
        context.log_image("pictures/neighbours", png)
    pictures.write_projector(os.path.join(workdir, "tensorboard"), features,
                             labels if (labels >= 0).any() else None, images, cell)
    return {}


def check_finetune(name, settings):
    fractions, epochs = tuple(settings.fractions), tuple(settings.epochs)
    if len(fractions) != len(epochs) or not all(0 < f <= 1 for f in fractions):
        raise ConfigError(f"evals.{name}.fractions ({fractions}) needs one fraction in (0, 1] "
                          f"for each of evals.{name}.epochs ({epochs}).")
    if settings.mix not in mixing.KINDS:
        raise ConfigError(f"evals.{name}.mix is {settings.mix!r}; use one of "
                          f"{', '.join(mixing.KINDS)}.")
    if settings.lr_scaling not in ("linear", "none"):
        raise ConfigError(f"evals.{name}.lr_scaling is {settings.lr_scaling!r}; use linear "
                          "(lr x batch / 256) or none.")


def check_evals(evals, splits=("train", "test")):
    """One ConfigError for an evaluator without a known ``type`` or asking for a split the
    run does not load (``splits``: "train", "test" and ``data.extra_eval_splits``)."""
    for name, settings in evals.items():
        kind = settings.get("type", None)
        if kind == OFF:
            continue
        if kind not in EVALUATORS:
            raise ConfigError(f"evals.{name}.type is {kind!r}; set --config.evals.{name}.type "
                              f"to one of {', '.join(sorted(EVALUATORS))} (or {OFF!r}: off).")
        if kind == "pictures" and settings.get("map", "auto") not in pictures.MAPS:
            raise ConfigError(f"evals.{name}.map is {settings.map!r}; use one of "
                              f"{', '.join(pictures.MAPS)}.")
        if kind == "pictures" and settings.get("map") == "umap" and \
                not pictures.umap_available():
            raise ConfigError(f"evals.{name}.map=umap needs umap-learn (pip install "
                              "umap-learn), or use map=tsne.")
        if kind == "finetune":
            check_finetune(name, settings)
        for field, default in (("split", "test"), ("train_split", "train")):
            split = settings.get(field, default)
            if split not in splits:
                raise ConfigError(f"evals.{name}.{field} is {split!r}, a split this run does "
                                  f"not load; use one of {', '.join(splits)}, or add it to "
                                  "--config.data.extra_eval_splits.")


def due(settings, step, final, eval_every_steps):
    """Whether an evaluator with these settings runs at ``step`` (``final``: the run's end)."""
    if settings.get("type", None) == OFF:
        return False
    if final:
        return True
    every = settings.get("every_steps", 0) or eval_every_steps
    return every > 0 and step % every == 0


def run_evaluators(context, evals, step, final, eval_every_steps):
    """Every evaluator of ``evals`` due at ``step``, its results merged into one dict."""
    results = {}
    for settings in evals.values():
        if due(settings, step, final, eval_every_steps):
            prefix = settings.get("prefix", "")
            found = EVALUATORS[settings.type](context, settings)
            results.update({prefix + key: value for key, value in found.items()})
    return results
