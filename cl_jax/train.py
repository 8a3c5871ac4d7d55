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
import jax.numpy as jnp
import ml_collections
import numpy as np

from cl_jax import compile_options, data, device_augment, evaluation, methods, models, parallel
from cl_jax.checkpoint import Checkpointer, PreemptionGuard
from cl_jax.data import pipeline
from cl_jax.errors import ConfigError, UserError
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


def validate(config):
    """Checks that need no data and no compilation; one clear message per problem."""
    if config.method.name not in methods.METHODS:
        raise ConfigError(f"Unknown method {config.method.name!r}; set --config.method.name to "
                          f"one of {', '.join(sorted(methods.METHODS))}.")
    if config.model.encoder not in models.ENCODERS:
        raise ConfigError(f"Unknown encoder {config.model.encoder!r}; set "
                          f"--config.model.encoder to one of {', '.join(models.ENCODERS)}.")
    method_cls = methods.METHODS[config.method.name]
    num_views = config.augment.num_global_views + config.augment.num_local_views
    if num_views < method_cls.min_views:
        raise ConfigError(f"{config.method.name} needs at least {method_cls.min_views} views; "
                          f"the config makes {num_views} (augment.num_global_views + "
                          "augment.num_local_views).")
    if config.augment.num_local_views and not method_cls.uses_local_views:
        raise ConfigError(f"{config.method.name} does not use multi-crop's local views; set "
                          "--config.augment.num_local_views=0 or pick a method that does "
                          "(swav, dino).")
    if config.total_steps < 0 and config.num_epochs <= 0:
        raise ConfigError("Set --config.num_epochs > 0 or --config.total_steps >= 0.")
    for name, value, allowed in (("nonfinite", config.nonfinite, ("stop", "skip")),
                                 ("model.dtype", config.model.dtype, ("float32", "bfloat16")),
                                 ("model.cpu_dot_library", config.model.cpu_dot_library,
                                  compile_options.CPU_DOT_LIBRARIES),
                                 ("data.bad_images", config.data.bad_images, ("skip", "fail"))):
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got "
                              f"{value!r}; set --config.{name}={allowed[0]}.")


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
    if config.method.num_examples <= 0:
        config.method.num_examples = n
    elif config.method.num_examples != n:
        raise ConfigError(f"method.num_examples is {config.method.num_examples}, but "
                          f"{train_split.name} has {n} example indices; set "
                          f"--config.method.num_examples={n} (or 0 to use the split's size).")


def create_experiment(config, mesh=None) -> Experiment:
    validate(config)
    mesh = mesh or parallel.create_mesh()
    parallel.local_batch_size(config.batch_size, mesh)  # a clear error if it does not divide
    parallel.local_batch_size(config.eval.batch_size, mesh, "eval.batch_size")
    train_split = data.load_split(config.data, "train")
    eval_train = data.load_split(config.data, "eval_train")
    eval_test = data.load_split(config.data, "eval_test")
    labelled = [s for s in (eval_train, train_split) if s is not None and s.num_classes]
    num_classes = labelled[0].num_classes if labelled else 0
    method_cls = methods.METHODS[config.method.name]
    if method_cls.needs_labels and not train_split.num_classes:
        raise ConfigError(
            f"{config.method.name} needs labels, but {train_split.name} has none; train on a "
            "labelled split (an image folder with one subfolder per class, or a TFDS split "
            "with labels) or pick a self-supervised method.")

    if method_cls.needs_index:
        check_indexable(config, train_split)
    steps_per_epoch = train_split.num_examples / config.batch_size
    total_steps = config.total_steps
    if total_steps < 0:
        total_steps = math.ceil(config.num_epochs * steps_per_epoch)
    probe_classes = num_classes if config.online_probe and train_split.num_classes else 0
    method, schedule, tx = create_method_and_optimizer(config, probe_classes, total_steps,
                                                       steps_per_epoch)
    return Experiment(config, mesh, train_split, eval_train, eval_test, num_classes,
                      steps_per_epoch, total_steps, method, schedule, tx)


def state_init_fn(exp: Experiment):
    c = exp.config
    views = data.view_augments(c.augment)
    sample = jnp.zeros((2, views[0].size, views[0].size, c.data.channels), jnp.float32)
    return lambda rng: init_train_state(exp.method, exp.tx, rng, sample)


def state_sharding(exp: Experiment):
    """The train state's shardings: replicated, or FSDP-style with ``config.shard_state``."""
    abstract = jax.eval_shape(state_init_fn(exp), jax.random.key(exp.config.seed))
    return parallel.state_sharding(abstract, exp.mesh, exp.config.shard_state)


def initial_state(exp: Experiment):
    """The freshly initialised train state, replicated (or sharded) over the mesh."""
    return jax.jit(state_init_fn(exp), out_shardings=state_sharding(exp))(
        jax.random.key(exp.config.seed))


def jit_train_step(exp: Experiment):
    """The jitted train step: state (donated) and global batch -> state, metrics."""
    shardings = state_sharding(exp)
    step = make_train_step(exp.method, exp.tx, exp.schedule, exp.config.seed,
                           augment=device_augment.from_config(exp.config))
    return jax.jit(step,
                   in_shardings=(shardings, parallel.batch_sharding(exp.mesh)),
                   out_shardings=(shardings, parallel.replicated(exp.mesh)), donate_argnums=0,
                   compiler_options=compile_options.for_model(exp.config.model))


def extract_features(exp: Experiment, state, split):
    """Encoder features of a whole split (no augmentation): (features, labels), on host."""
    c = exp.config
    batches = pipeline.eval_batches(
        split, bad_images=c.data.bad_images, size=c.eval.image_size,
        crop_fraction=c.eval.crop_fraction, mean=c.data.mean, std=c.data.std,
        global_batch=c.eval.batch_size, process_index=jax.process_index(),
        process_count=jax.process_count(), max_examples=c.eval.max_train_examples
        if split is exp.eval_train_split else -1)
    network = exp.method.network
    embed = jax.jit(
        lambda params, batch_stats, x: network.apply(
            {"params": params, "batch_stats": batch_stats}, x, method=network.features),
        out_shardings=parallel.batch_sharding(exp.mesh),
        compiler_options=compile_options.for_model(c.model))
    features, labels, masks = [], [], []
    for host_batch in batches:
        batch = parallel.to_global(host_batch, exp.mesh)
        features.append(parallel.to_host(embed(state.params, state.batch_stats,
                                               batch["image"])))
        labels.append(parallel.to_host(batch["label"]))
        masks.append(parallel.to_host(batch["mask"]))
    keep = np.concatenate(masks) > 0
    return np.concatenate(features)[keep], np.concatenate(labels)[keep]


def evaluate(exp: Experiment, state):
    """kNN, linear and few-label linear top-1 on the held-out split, or {} without labels."""
    if exp.eval_train_split is None or exp.eval_test_split is None or not exp.num_classes:
        return {}
    train_features, train_labels = extract_features(exp, state, exp.eval_train_split)
    test_features, test_labels = extract_features(exp, state, exp.eval_test_split)
    return evaluation.evaluate_features(train_features, train_labels, test_features,
                                        test_labels, exp.num_classes, exp.config.eval)


def summary_line(step, results):
    if not results:
        return f"step {step}: no labelled evaluation data; nothing to evaluate."
    line = (f"Evaluation at step {step}: kNN top-1 {results['knn_top1']:.4f} | "
            f"linear top-1 {results['linear_top1']:.4f}")
    if "fewshot_top1" in results:
        line += (f" | few-label linear top-1 {results['fewshot_top1']:.4f} "
                 f"± {results['fewshot_top1_std']:.4f}")
    return line


def save_config(config, workdir):
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))


def write_eval(workdir, step, results):
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "eval.json"), "w") as f:
            json.dump({"step": int(step), **results}, f, indent=2)


def truncate_metrics(workdir, step):
    """Drops the lines of ``metrics.jsonl`` logged after ``step`` (and a half-written last line).

    A killed run logged steps past its last checkpoint; the resumed run logs them again.
    """
    path = os.path.join(workdir, "metrics.jsonl")
    if jax.process_index() != 0 or not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line if line.endswith("\n") else line + "\n")
        except (ValueError, KeyError):
            continue
    if keep != lines:
        with open(path + ".tmp", "w") as f:
            f.writelines(keep)
        os.replace(path + ".tmp", path)


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
    exp = create_experiment(config, mesh)
    save_config(exp.config, workdir)
    checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"),
                                exp.config.checkpoint_every_steps,
                                max_to_keep=exp.config.keep_checkpoints,
                                asynchronous=exp.config.checkpoint_async)
    try:
        return train_loop(exp, workdir, checkpointer)
    finally:
        checkpointer.close()  # waits for a save in flight: the last checkpoint is complete


def train_loop(exp: Experiment, workdir, checkpointer):
    c = exp.config
    state = checkpointer.restore_latest(initial_state(exp))
    start_step = int(state.step)
    truncate_metrics(workdir, start_step)
    writer = MetricWriter(workdir, exp.total_steps, c.batch_size)
    writer.print(f"{c.method.name}: {exp.train_split.name} ({exp.train_split.num_examples} "
                 f"examples), batch {c.batch_size} on {exp.mesh.size} device(s)"
                 + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else "")
                 + f", {exp.total_steps} steps"
                 + (f", resuming at step {start_step}" if start_step else ""))

    train_step = jit_train_step(exp)
    process = dict(process_index=jax.process_index(), process_count=jax.process_count())

    def dataset_from(step, bad_indices=()):
        return data.train_dataset(
            exp.train_split, data.view_augments(c.augment), seed=c.seed,
            global_batch=c.batch_size, start_step=step, mean=c.data.mean, std=c.data.std,
            shuffle_buffer=c.data.shuffle_buffer, bad_indices=bad_indices,
            colour=not c.augment.colour_on_device, fused_crop=c.data.fused_crop, **process)

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
            if c.eval_every_steps > 0 and step % c.eval_every_steps == 0 \
                    and step < exp.total_steps:
                log_pending()
                results = evaluate(exp, state)
                writer.write(step, {f"eval/{k}": v for k, v in results.items()})
                writer.print(summary_line(step, results))
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
    results = evaluate(exp, state)
    writer.write(step, {f"eval/{k}": v for k, v in results.items()})
    write_eval(workdir, step, results)
    writer.print(summary_line(step, results))
    writer.close()
    return results
