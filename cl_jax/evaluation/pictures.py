"""Pictures of an embedding: a 2-D map coloured by label, a nearest-neighbour sheet, and the
files of TensorBoard's embedding projector (the evaluator ``pictures``, registry.py).

- ``embedding_map``: t-SNE (scikit-learn; PCA initialisation, a fixed seed) of the
  L2-normalised features, or UMAP when ``umap-learn`` is installed and asked for;
- ``neighbour_sheet``: query images, each followed by its nearest neighbours (cosine
  similarity, the query itself left out) in the same split, as lightly's
  ``plot_nearest_neighbors`` shows them;
- ``write_projector``: ``projector_config.pbtxt``, ``embeddings.tsv``, ``metadata.tsv`` and a
  ``sprite.png`` in the TensorBoard log directory, which the projector tab reads.
"""

import os

import numpy as np

MAPS = ("auto", "tsne", "umap")


def l2_normalize(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def umap_available():
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def embedding_map(features, method="auto", seed=0):
    """(N, 2) coordinates of ``features`` and the name of the method that made them."""
    x = l2_normalize(features)
    if method == "umap" or (method == "auto" and umap_available()):
        import umap

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x), "UMAP"
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed)
    return tsne.fit_transform(x), "t-SNE"


def nearest_neighbours(features, queries, k):
    """(len(queries), k) rows of ``features`` most cosine-similar to each query row, the
    query itself left out, most similar first."""
    x = l2_normalize(features)
    similarity = x[queries] @ x.T
    similarity[np.arange(len(queries)), queries] = -np.inf
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def save_figure(fig, path):
    """``fig`` as a PNG at ``path``, written whole or not at all; returns the PNG's bytes."""
    import matplotlib.pyplot as plt

    fig.savefig(path + ".tmp.png", dpi=100)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    with open(path, "rb") as f:
        return f.read()


def figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_map(path, coords, labels, title, class_names=()):
    """A scatter plot of ``coords`` coloured by ``labels`` (-1: unlabelled, grey)."""
    plt = figure()
    fig, ax = plt.subplots(figsize=(6, 6))
    labels = np.asarray(labels) if labels is not None else np.full(len(coords), -1)
    unlabelled = labels < 0
    ax.scatter(*coords[unlabelled].T, s=6, c="lightgrey")
    classes = np.unique(labels[~unlabelled])
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, label in enumerate(classes):
        mine = labels == label
        name = class_names[label] if label < len(class_names) else str(label)
        ax.scatter(*coords[mine].T, s=6, color=cmap(i % cmap.N), label=name)
    if 0 < len(classes) <= 20:
        ax.legend(markerscale=2, fontsize=7, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def last_frame(images):
    """Images (..., C) as pictures: RGB (..., 3) or greyscale (..., 1). A frame stack (more
    than 3 channels) gives its last frame: the last 3 channels when the channels divide
    into RGB frames, else the last channel."""
    images = np.asarray(images)
    channels = images.shape[-1]
    return images[..., -3:] if channels % 3 == 0 else images[..., -1:]


def show(ax, image):
    image = last_frame(image)
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_neighbours(path, images, queries, neighbours, labels=None):
    """Rows of (query, its neighbours) from ``images`` (uint8, (N, h, w, C))."""
    plt = figure()
    rows, k = neighbours.shape
    fig, axes = plt.subplots(rows, k + 1, figsize=(1.2 * (k + 1), 1.2 * rows), squeeze=False)
    for r, (query, found) in enumerate(zip(queries, neighbours, strict=True)):
        for c, index in enumerate([query, *found]):
            ax = axes[r, c]
            show(ax, images[index])
            if labels is not None:
                ax.set_title(("query " if c == 0 else "") + str(labels[index]), fontsize=6)
            if c == 0:
                for spine in ax.spines.values():
                    spine.set_color("red")
    fig.tight_layout()
    return save_figure(fig, path)


def sprite(images, cell):
    """One square image of ``images`` (uint8, (N, cell, cell, C)) in a grid, row by row, as
    the projector wants it; a frame stack gives its last frame (``last_frame``)."""
    images = last_frame(images)
    n, channels = len(images), images.shape[-1]
    side = int(np.ceil(np.sqrt(n)))
    grid = np.zeros((side * cell, side * cell, channels), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, side)
        grid[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = image
    return np.repeat(grid, 3, axis=-1) if channels == 1 else grid


def write_projector(logdir, features, labels=None, images=None, cell=0):
    """TensorBoard projector files in ``logdir``: the features, a label column, and with
    ``images`` (uint8, (N, cell, cell, C)) a sprite."""
    from PIL import Image

    os.makedirs(logdir, exist_ok=True)
    np.savetxt(os.path.join(logdir, "embeddings.tsv"), np.asarray(features, np.float32),
               delimiter="\t", fmt="%.6g")
    config = ["embeddings {", '  tensor_name: "features"', '  tensor_path: "embeddings.tsv"']
    if labels is not None:
        with open(os.path.join(logdir, "metadata.tsv"), "w") as f:
            f.writelines(f"{int(label)}\n" for label in labels)
        config.append('  metadata_path: "metadata.tsv"')
    if images is not None:
        Image.fromarray(sprite(images, cell)).save(os.path.join(logdir, "sprite.png"))
        config += ["  sprite {", '    image_path: "sprite.png"',
                   f"    single_image_dim: {cell}", f"    single_image_dim: {cell}", "  }"]
    with open(os.path.join(logdir, "projector_config.pbtxt"), "w") as f:
        f.write("\n".join([*config, "}"]) + "\n")
