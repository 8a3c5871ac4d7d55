"""Weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018).

Cosine similarity to every training feature; the ``k`` most similar vote for their class
with weight ``exp(sim / temperature)``; the class with the largest vote wins. ``k=200`` and
``temperature=0.07`` are the values of Wu et al. 2018 (used by InstDisc, MoCo, solo-learn).

``knn_predict`` holds the training features on one device. ``knn_predict_sharded`` splits
them over the devices of a mesh (N/d rows each): every device takes the top ``k`` of a chunk
of test features against its own rows, the d * k candidates are gathered and merged to the
global top ``k`` (the two-stage top-k of sharded nearest-neighbour search, as in FAISS's
sharded indexes, Johnson et al. 2019, "Billion-scale similarity search with GPUs"). Device
memory is O(N D / d + chunk N / d).

Both select neighbours alike: similarity descending, equal similarities by lower training
index (``lax.top_k``'s rule). Their similarities agree to float32 rounding but not always to
the bit: XLA orders a matrix product's sums by its shapes (chunk x N against chunk x N/d),
and the sharded one divides by the training norms after the product, not before. So the
predictions are equal except where two similarities (or two class votes) within a few ulps
of each other decide one; where the arithmetic is exact (e.g. one-hot features) they are
equal, ties included.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from cl_jax import parallel


def l2_normalize(x, eps=1e-12):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def _vote(similarity, neighbour_labels, num_classes, temperature):
    """The class with the largest sum of ``exp(similarity / temperature)`` over neighbours
    (the first such class on a tie); a label of -1 (or any label outside the classes) has no
    vote.

    The votes are added one neighbour rank at a time: (chunk, classes) memory, where a
    one-hot (chunk, k, classes) array is 200 MB for k = 200, 1000 classes and a chunk of 256
    (XLA:CPU builds it in full), and every step adds to distinct entries, so the sums are
    deterministic on every backend (no atomics).
    """
    weights = jnp.where(neighbour_labels >= 0, jnp.exp(similarity / temperature), 0.0)
    classes = jnp.maximum(neighbour_labels, 0)  # a negative index would wrap around
    rows = jnp.arange(similarity.shape[0])

    def add(rank, votes):
        return votes.at[rows, classes[:, rank]].add(weights[:, rank], mode="drop")

    votes = jax.lax.fori_loop(0, similarity.shape[1], add,
                              jnp.zeros((similarity.shape[0], num_classes), jnp.float32))
    return jnp.argmax(votes, axis=-1)


@functools.partial(jax.jit, static_argnames=("num_classes", "k", "chunk_size"))
def knn_predict(train_features, train_labels, test_features, num_classes, k=200,
                temperature=0.07, chunk_size=256):
    """Predicted class of every test feature; ``k`` is capped by the training-set size."""
    train = l2_normalize(train_features.astype(jnp.float32))
    test = l2_normalize(test_features.astype(jnp.float32))
    k = min(k, train.shape[0])
    num_test = test.shape[0]
    pad = -num_test % chunk_size
    chunks = jnp.pad(test, ((0, pad), (0, 0))).reshape(-1, chunk_size, test.shape[1])

    def predict(chunk):
        similarity, neighbours = jax.lax.top_k(chunk @ train.T, k)
        return _vote(similarity, train_labels[neighbours], num_classes, temperature)

    return jax.lax.map(predict, chunks).reshape(-1)[:num_test]


def row_sharding(mesh):
    """Rows split over every device of ``mesh`` (all its axes, in order)."""
    return NamedSharding(mesh, PartitionSpec(mesh.axis_names))


def _pad_rows(x, num_rows, fill):
    return jnp.pad(x, [(0, num_rows - x.shape[0])] + [(0, 0)] * (x.ndim - 1),
                   constant_values=fill)


def _host_rows(host, start, stop, dtype, fill):
    """Rows [start, stop) of ``host`` as ``dtype``, ``fill`` rows past its end."""
    part = np.asarray(host[start:min(stop, len(host))], dtype)
    if len(part) == stop - start:
        return part
    return np.pad(part, [(0, stop - start - len(part))] + [(0, 0)] * (part.ndim - 1),
                  constant_values=fill)


def _from_host_rows(host, num_rows, sharding, dtype, fill):
    """A (num_rows, ...) global array of ``host``'s rows then ``fill`` rows, split by rows,
    copied one device at a time: the host never holds a padded or converted copy of more than
    one device's rows."""
    shape = (num_rows, *host.shape[1:])
    arrays = []
    for device, index in sharding.addressable_devices_indices_map(shape).items():
        start, stop, _ = index[0].indices(num_rows)
        rows = jax.device_put(_host_rows(host, start, stop, dtype, fill), device)
        arrays.append(rows.block_until_ready())
    return jax.make_array_from_single_device_arrays(shape, sharding, arrays)


@functools.partial(jax.jit, static_argnames=("num_rows", "fill", "dtype", "sharding"))
def _resharded_rows(x, num_rows, fill, dtype, sharding):
    return jax.lax.with_sharding_constraint(_pad_rows(x.astype(dtype), num_rows, fill), sharding)


def _place_rows(x, num_rows, sharding, dtype, fill):
    """``x`` as a (num_rows, ...) ``dtype`` array split by rows, ``fill`` rows at the end."""
    if not isinstance(x, jax.Array):
        return _from_host_rows(np.asarray(x), num_rows, sharding, dtype, fill)
    if x.dtype == dtype and len(x) == num_rows and x.sharding.is_equivalent_to(sharding, x.ndim):
        return x
    return _resharded_rows(x, num_rows, fill, np.dtype(dtype), sharding)


@jax.jit
def _norms(features):
    return jnp.maximum(jnp.linalg.norm(features, axis=-1), 1e-12)  # l2_normalize's divisor


def place_train(train_features, train_labels, mesh):
    """(features, norms, labels) of the training set split by rows over the devices of
    ``mesh`` and padded to a multiple of the device count (zero rows, label -1).

    The features stay as they are (float32) and the similarities are divided by their norms:
    no normalised copy is made. Host NumPy arrays are copied one device's rows at a time; a
    float32 global jax Array already split so is used as it is.
    """
    num_rows = -(-len(train_features) // mesh.size) * mesh.size
    sharding = row_sharding(mesh)
    features = _place_rows(train_features, num_rows, sharding, np.float32, 0)
    labels = _place_rows(train_labels, num_rows, sharding, np.int32, -1)
    return features, _norms(features), labels


def sharded_top_k(train, norms, labels, chunk, mesh, num_train, k, skip_unlabelled=False):
    """Top ``k`` (similarity, label) of each row of ``chunk`` (normalised, replicated) over
    ``place_train``'s rows, of which the first ``num_train`` are real; ``k <= num_train``.
    With ``skip_unlabelled`` the rows labelled -1 take no part, as if left out (``k`` at
    most the number of the others); without, they are neighbours without a vote.
    With ``labels`` the row indices it returns the neighbours' indices.

    Each device's top ``min(k, N/d)`` is in (similarity descending, index ascending) order;
    gathered in device order, equal similarities stay in ascending global index order, so
    ``lax.top_k`` over the candidates (lower position first on ties) picks exactly what it
    picks over the whole similarity matrix.
    """
    axes = mesh.axis_names
    rows = train.shape[0] // mesh.size

    def local(train, norms, labels, chunk):
        index = jax.lax.axis_index(axes) * rows + jnp.arange(rows)
        real = (index < num_train) & ((labels >= 0) | (not skip_unlabelled))
        similarity = jnp.where(real, chunk @ train.T / norms, -jnp.inf)
        values, best = jax.lax.top_k(similarity, min(k, rows))
        gather = functools.partial(jax.lax.all_gather, axis_name=axes, axis=1, tiled=True)
        return gather(values), gather(labels[best])

    spec = PartitionSpec(axes)
    # all_gather's result is the same on every device, which shard_map cannot infer.
    values, candidates = jax.shard_map(
        local, mesh=mesh, in_specs=(spec, spec, spec, PartitionSpec()),
        out_specs=PartitionSpec(), check_vma=False)(train, norms, labels, chunk)
    similarity, best = jax.lax.top_k(values, k)
    return similarity, jnp.take_along_axis(candidates, best, axis=1)


@functools.partial(jax.jit, static_argnames=("mesh", "num_train", "num_classes", "k",
                                             "skip_unlabelled"))
def predict_chunk_sharded(train, norms, labels, chunk, temperature, *, mesh, num_train,
                          num_classes, k, skip_unlabelled=False):
    """Predictions for one (replicated) chunk of raw test features against ``place_train``'s
    output; ``num_train`` real rows, ``k <= num_train`` (see ``sharded_top_k``). One
    compilation per shape."""
    similarity, neighbour_labels = sharded_top_k(train, norms, labels, l2_normalize(chunk),
                                                 mesh, num_train, k, skip_unlabelled)
    return _vote(similarity, neighbour_labels, num_classes, temperature)


def _host(x):
    return parallel.to_host(x) if isinstance(x, jax.Array) else np.asarray(x)


def knn_predict_sharded(train_features, train_labels, test_features, num_classes, mesh, k=200,
                        temperature=0.07, chunk_size=256):
    """``knn_predict`` with the training features split over the devices of ``mesh``.

    ``train_features`` (N, D) and ``train_labels`` (N,): host NumPy arrays (every process
    holds all of them; each copies only its devices' rows) or global jax Arrays. The test
    features go to the devices ``chunk_size`` rows at a time, replicated; at most two chunks
    are in flight. Returns the (M,) host predictions.
    """
    num_train = train_features.shape[0]
    train = place_train(train_features, train_labels, mesh)
    test = _host(test_features)
    replicated = NamedSharding(mesh, PartitionSpec())
    predict = functools.partial(predict_chunk_sharded, mesh=mesh, num_train=num_train,
                                num_classes=num_classes, k=min(k, num_train))
    out = []
    for start in range(0, len(test), chunk_size):
        if len(out) >= 2:
            out[-2].block_until_ready()
        rows = _host_rows(test, start, start + chunk_size, np.float32, 0)
        chunk = jax.make_array_from_callback(rows.shape, replicated, rows.__getitem__)
        out.append(predict(*train, chunk, jnp.float32(temperature)))
    predictions = jax.device_get([p.addressable_data(0) for p in out])
    return np.concatenate(predictions)[:len(test)] if predictions else np.zeros(0, np.int32)


def knn_accuracy(train_features, train_labels, test_features, test_labels, num_classes,
                 k=200, temperature=0.07, mesh=None):
    """Top-1 accuracy of ``knn_predict``; of ``knn_predict_sharded`` with a mesh of more than
    one device."""
    if mesh is not None and mesh.size > 1:
        predictions = knn_predict_sharded(train_features, train_labels, test_features,
                                          num_classes, mesh, k, temperature)
    else:
        predictions = knn_predict(train_features, train_labels, test_features, num_classes, k,
                                  temperature)
    return float(jnp.mean(jnp.asarray(predictions) == jnp.asarray(test_labels)))
