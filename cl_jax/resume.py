"""Resuming a run: the config must be the run's, and the logs written after the checkpoint go.

A run's config is kept beside its checkpoints (``workdir/checkpoints/run_config.json``, written
with the first checkpoint). A restart compares the new config with it: a change to a field
that changes the training trajectory is one ``ConfigError`` naming the fields, unless
``allow_config_change=True``; fields that only say how long to train, how often to log,
checkpoint and evaluate, or how to evaluate pass, and so does a field that the saved config
lacks (a run from an older version) at its default value (the behaviour that version had).
Then the lines of ``metrics.jsonl`` and the
TensorBoard events logged after the restored step are dropped: the resumed run logs them again.
"""

import glob
import json
import os

from cl_jax.errors import ConfigError

# Fields (dotted prefixes) a resumed run may change: its length, its cadences, evaluation,
# where things are and how they run, not what is computed.
SAFE_FIELDS = ("total_steps", "num_epochs", "log_every_steps", "checkpoint_every_steps",
               "eval_every_steps", "keep_checkpoints", "checkpoint_async", "nonfinite",
               "allow_config_change", "eval.", "evals.", "data.data_dir", "data.bad_images",
               "data.val_split", "data.val_train_split",
               "cpu_dot_library", "shard_state")


def flatten(tree, prefix=""):
    """``{"a": {"b": 1}} -> {"a.b": 1}``, with sequences as lists (JSON's view)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def is_safe(field):
    return any(field == s or (s.endswith(".") and field.startswith(s)) for s in SAFE_FIELDS)


def changed_fields(saved, config):
    """The dotted fields whose values differ between two configs (as JSON dicts)."""
    old, new = flatten(saved), flatten(config)
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def new_at_default(field, old, new):
    """Whether ``field`` is absent from the saved config and at the base config's default."""
    if field in old or field not in new:
        return False
    from cl_jax import config_lib

    defaults = flatten(json.loads(config_lib.base_config().to_json()))
    return field in defaults and defaults[field] == new[field]


def check_config_change(saved, config, workdir):
    """Raises ConfigError if ``config`` changes a trajectory field of the run's ``saved``."""
    old, new = flatten(saved), flatten(config)
    unsafe = [f for f in changed_fields(saved, config)
              if not is_safe(f) and not new_at_default(f, old, new)]
    if not unsafe or config.get("allow_config_change"):
        return
    listed = "; ".join(f"{f}: {old.get(f, '(absent)')!r} -> {new.get(f, '(absent)')!r}"
                       for f in unsafe[:8])
    more = f" and {len(unsafe) - 8} more" if len(unsafe) > 8 else ""
    raise ConfigError(
        f"{workdir} holds a run with another config, and resuming it with this one would make "
        f"another run: {listed}{more}. Use a new --workdir for a new run, rerun with the run's "
        "own config to resume it, or pass --config.allow_config_change=True to go on with the "
        "changed config.")


def load_run_config(checkpoint_dir):
    path = os.path.join(checkpoint_dir, "run_config.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def save_run_config(checkpoint_dir, config_json):
    """Writes the run's config beside its checkpoints, atomically."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    path = os.path.join(checkpoint_dir, "run_config.json")
    with open(path + ".tmp", "w") as f:
        f.write(config_json)
    os.replace(path + ".tmp", path)


def truncate_metrics(workdir, step):
    """Drops the lines of ``metrics.jsonl`` logged after ``step`` (and a half-written last line).

    A killed run logged steps past its last checkpoint; the resumed run logs them again.
    """
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
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


def truncate_tensorboard(workdir, step):
    """Rewrites the TensorBoard event files of ``workdir`` without the events after ``step``."""
    import tensorflow as tf

    for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))):
        records = []
        try:
            for record in tf.data.TFRecordDataset(path):
                records.append(record.numpy())
        except tf.errors.DataLossError:  # a killed run's half-written last record
            pass
        keep = [r for r in records if tf.compat.v1.Event.FromString(r).step <= step]
        if len(keep) == len(records) and os.path.getsize(path) == sum(
                len(r) + 16 for r in records):  # 16 bytes of length and CRCs per record
            continue
        with tf.io.TFRecordWriter(path + ".tmp") as writer:
            for record in keep:
                writer.write(record)
        os.replace(path + ".tmp", path)
