"""Embeds a data set with a trained run: ``python -m cl_jax.embed --workdir=runs/byol
--out=embeddings.npy``.

Writes the features the run's evaluators score (``method.image_features``, or a sentence
run's ``text_features``) of every example of a split as a float32 (N, D) ``--out``, computed
sharded over the devices by the loop's own evaluation pipeline. Beside it, with ``--out``'s
name less ``.npy``: ``.labels.npy`` (int32, -1 where unknown) when the split has labels, and
``.paths.txt`` (one image path per row) for an image folder, or ``.texts.txt`` (one sentence per
row) for a text split. ``--split`` is ``test`` (the default), ``train`` (the evaluation's train
split) or one of ``data.extra_eval_splits``; ``--images=DIR`` embeds a folder of JPEG / PNG
images instead (class subfolders give labels). Unreadable images are left out, with their
paths.
"""

import os
import sys

import jax
import numpy as np
from absl import app, flags, logging

from cl_jax.errors import UserError


def split_to_embed(exp, split=None, images=None):
    """The split ``--split`` / ``--images`` names."""
    from cl_jax.data import sources

    if images is not None:
        if exp.eval_test_split is not None and exp.eval_test_split.texts is not None:
            raise UserError(f"The run ({exp.config.method.name}) encodes sentences; --images "
                            "needs an image run.")
        return sources.folder_split(images, exp.config.data.channels)
    splits = {"train": exp.eval_train_split, "test": exp.eval_test_split,
              **exp.extra_eval_splits}
    found = splits.get(split)
    if found is None:
        have = [name for name, s in splits.items() if s is not None]
        raise UserError(f"The run has no split {split!r} to embed; it has {', '.join(have)} "
                        "(data.extra_eval_splits adds more), or pass --images=DIR.")
    return found


def embed_split(exp, state, split):
    """(features (N, D), labels (N,) or None, names (N,) or None) of every row of ``split``."""
    from cl_jax import train

    if split.texts is not None:
        texts = list(split.texts[0])
        features = train.embed_texts(exp, state, texts, "text_features")
        labels = np.asarray(split.read(np.arange(split.num_examples))["label"])
        return features, labels if split.num_classes else None, texts
    features, labels, rows = train.extract_features(exp, state, split, positions=True)
    names = [split.describe(int(i)) for i in rows] if split.describe is not str else None
    return features, labels if split.num_classes else None, names


def write(out, features, labels=None, names=None, kind="paths"):
    """``out`` and the files beside it (module docstring), each written whole or not at all.
    Returns the paths written."""
    stem = out[:-len(".npy")] if out.endswith(".npy") else out
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    files = {f"{stem}.npy": np.asarray(features, np.float32)}
    if labels is not None:
        files[f"{stem}.labels.npy"] = np.asarray(labels, np.int32)
    if names is not None:
        files[f"{stem}.{kind}.txt"] = "".join(f"{name}\n" for name in names)
    for path, content in files.items():
        with open(path + ".tmp", "wb") as f:
            if isinstance(content, str):
                f.write(content.encode())
            else:
                np.save(f, content)
        os.replace(path + ".tmp", path)
    return list(files)


def run(workdir, out, split="test", images=None):
    """Embeds ``split`` (or the folder ``images``) with the run in ``workdir``; returns the
    paths written (by process 0)."""
    from cl_jax.evaluate import load_run

    if not out:
        raise UserError("Pass --out=FILE.npy, where the features go.")
    exp, state = load_run(workdir)
    chosen = split_to_embed(exp, split, images)
    features, labels, names = embed_split(exp, state, chosen)
    if jax.process_index() != 0:
        return []
    return write(out, features, labels, names, "texts" if chosen.texts is not None else "paths")


def main(argv):
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    if f.workdir is None:
        raise app.UsageError("--workdir is required.")
    try:
        written = run(f.workdir, f.out, f.split, f.images)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "The workdir of a training run.")
    flags.DEFINE_string("out", None, "Where the features go (.npy).")
    flags.DEFINE_string("split", "test", "test, train, or one of data.extra_eval_splits.")
    flags.DEFINE_string("images", None, "A folder of JPEG/PNG images to embed instead.")
    app.run(main)
