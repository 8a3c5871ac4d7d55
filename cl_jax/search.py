"""Semantic search over images with a trained image-text run (CLIP, SigLIP, LiT).

``python -m cl_jax.search --workdir=runs/clip --images=DIR --query="..."`` embeds the images
under ``DIR`` with the run's image tower (once: the index is cached in
``workdir/search/``, keyed by the files, their sizes and times, and the checkpoint step),
embeds the query with the text tower, and prints the ``--top_k`` most similar images
(cosine similarity) with their scores. ``--query_image=PATH`` searches by an image instead.
It also writes a contact sheet of the query and its hits (``--sheet``, a PNG).
"""

import hashlib
import json
import os
import sys

import numpy as np
from absl import app, flags, logging

from cl_jax.errors import UserError


def index_key(paths, step):
    """A hash of the image files (path, size, modification time) and the checkpoint step."""
    digest = hashlib.sha256(str(step).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def image_index(exp, state, workdir, directory):
    """(paths, L2-normalised embeddings) of the images under ``directory``, cached."""
    from cl_jax import train
    from cl_jax.data import sources

    if not hasattr(exp.method, "embed_images"):
        raise UserError(f"The run in {workdir} ({exp.config.method.name}) has no text tower to "
                        "search with; train an image-text method (configs clip, siglip, lit).")
    split = sources.folder_split(directory, exp.config.data.channels)
    paths = [split.describe(i) for i in range(split.num_examples)]
    cache = os.path.join(workdir, "search", f"index-{index_key(paths, int(state.step))}.npz")
    if os.path.exists(cache):
        saved = np.load(cache)
        return [str(p) for p in saved["paths"]], saved["embeddings"]
    embeddings, _, positions = train.extract_features(exp, state, split, "embed_images",
                                                      positions=True)
    paths = [paths[i] for i in positions]  # unreadable images are left out
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache + ".tmp", "wb") as f:
        np.savez(f, paths=np.asarray(paths), embeddings=embeddings)
    os.replace(cache + ".tmp", cache)
    return paths, embeddings


def query_embedding(exp, state, text=None, image_path=None):
    """The L2-normalised embedding of a text query or of one image."""
    from cl_jax import train
    from cl_jax.data import sources

    if text is not None:
        if not text.strip():
            raise UserError("The query is empty; pass --query='a few words'.")
        return train.embed_texts(exp, state, [text])[0]
    if not os.path.isfile(image_path):
        raise UserError(f"No image at --query_image={image_path!r}.")
    directory = os.path.dirname(os.path.abspath(image_path))
    split = sources.folder_split(directory, exp.config.data.channels)
    index = [split.describe(i) for i in range(split.num_examples)].index(
        os.path.join(directory, os.path.basename(image_path)))
    single = sources.Split(image_path, 1, 0, read=lambda i: split.read(i + index),
                           describe=lambda i: image_path, channels=split.channels)
    return train.extract_features(exp, state, single, "embed_images")[0][0]


def search(embeddings, query, top_k):
    """Indices and cosine similarities of the ``top_k`` rows of ``embeddings`` most similar
    to ``query`` (all unit vectors), best first."""
    scores = embeddings @ query
    order = np.argsort(-scores, kind="stable")[:top_k]
    return order, scores[order]


def contact_sheet(path, title, hits, query_image=None):
    """A PNG: the query (its text as the title, or the query image) and the hits with scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ([("query", query_image)] if query_image else []) + [
        (f"{score:.3f}\n{os.path.basename(p)}", p) for p, score in hits]
    fig, axes = plt.subplots(1, len(panels), figsize=(2 * len(panels), 2.6), squeeze=False)
    for ax, (label, image_path) in zip(axes[0], panels, strict=True):
        ax.imshow(plt.imread(image_path), cmap="gray")
        ax.set_title(label, fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path + ".tmp.png", dpi=100)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def run(workdir, images, query=None, query_image=None, top_k=8, sheet=None):
    """Searches ``images`` for ``query`` (or ``query_image``); returns [(path, score)]."""
    if (query is None) == (query_image is None):
        raise UserError("Pass exactly one of --query='text' and --query_image=PATH.")
    from cl_jax.evaluate import load_run

    exp, state = load_run(workdir)
    paths, embeddings = image_index(exp, state, workdir, images)
    vector = query_embedding(exp, state, query, query_image)
    order, scores = search(embeddings, vector, top_k)
    hits = [(paths[i], float(s)) for i, s in zip(order, scores, strict=True)]
    sheet = sheet or os.path.join(workdir, "search", "hits.png")
    contact_sheet(sheet, query if query is not None else f"like {query_image}", hits,
                  query_image)
    return hits, sheet


def main(argv):
    logging.set_verbosity(logging.WARNING)
    f = flags.FLAGS
    if f.workdir is None or f.images is None:
        raise app.UsageError("--workdir and --images are required.")
    try:
        hits, sheet = run(f.workdir, f.images, f.query, f.query_image, f.top_k, f.sheet)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    for path, score in hits:
        print(f"{score:.4f}  {path}")
    print(json.dumps({"contact_sheet": sheet}))


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "The workdir of an image-text training run.")
    flags.DEFINE_string("images", None, "A folder of JPEG/PNG images to search.")
    flags.DEFINE_string("query", None, "A text query.")
    flags.DEFINE_string("query_image", None, "An image to search by, instead of a text.")
    flags.DEFINE_integer("top_k", 8, "How many images to print.")
    flags.DEFINE_string("sheet", None, "Where to write the contact sheet PNG (default: "
                        "workdir/search/hits.png).")
    app.run(main)
