"""Frozen features that stay on the devices: kNN and linear probes with bounded host memory.

``eval.features_on_device=True`` keeps a split's features where the encoder made them, as
one global (M, D) float32 array split by rows over the mesh (each device holds M/d rows,
each host only its devices' rows), with the labels (small) on the host, -1 where a row has
none (the last batch's padding, an unreadable image, an unlabelled example). ImageNet's
1.28M x 2048 training features are 10 GB; on 8 devices each holds 1.3 GB and no host holds
them all, where ``to_host`` would copy all 10 GB to every host.

- ``FeatureBuffer`` fills the array batch by batch: one jitted, donated update per batch
  into an (batches, B, D) buffer split on its batch axis (each device writes its own rows),
  then one reshape to (M, D) split by rows.
- ``knn_top1``: ``knn.predict_chunk_sharded`` against the rows as they lie (no copy); rows
  without a label take no part; test rows go to the devices a chunk at a time.
- ``linear_top1`` / ``fewshot_top1``: the probes of ``linear.py`` (standardised features,
  AdamW with a cosine schedule, logistic regression), data-parallel: each device samples its
  share of a minibatch from its own rows and the gradients are summed over the mesh. Their
  minibatches differ from the host probe's, so their numbers agree with it statistically, not
  to the bit; the few-label probe gathers its few rows to every device.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from cl_jax.evaluation import knn as knn_lib
from cl_jax.evaluation.linear import few_label_subset


@dataclasses.dataclass
class DeviceFeatures:
    values: jax.Array  # (M, D) float32, rows split over every device of ``mesh``
    labels: np.ndarray  # (M,) int32 on the host; -1: no label (or not an example)
    mesh: jax.sharding.Mesh

    @property
    def num_labelled(self):
        return int(np.sum(self.labels >= 0))


class FeatureBuffer:
    """Collects (B, D) batch-split feature batches into a ``DeviceFeatures``."""

    def __init__(self, mesh, num_batches):
        self.mesh, self.num_batches = mesh, num_batches
        self.buffer, self.labels, self.count = None, [], 0

    def add(self, features, labels, mask):
        """``features`` (B, D) split on the batch; ``labels`` and ``mask`` (B,) on the host."""
        if self.buffer is None:
            axes = self.mesh.axis_names
            self.sharding = NamedSharding(self.mesh, PartitionSpec(None, axes))
            self.buffer = jax.jit(lambda: jnp.zeros((self.num_batches, *features.shape),
                                                    jnp.float32),
                                  out_shardings=self.sharding)()
        self.buffer = _put(self.buffer, features, jnp.int32(self.count))
        self.labels.append(np.where(np.asarray(mask) > 0, np.asarray(labels), -1))
        self.count += 1

    def result(self):
        labels = np.concatenate(self.labels).astype(np.int32)
        labels = np.pad(labels, (0, self.buffer.size // self.buffer.shape[-1] - len(labels)),
                        constant_values=-1)  # batches that never came (none, normally)
        values = _flatten(self.buffer, knn_lib.row_sharding(self.mesh))
        return DeviceFeatures(values, labels, self.mesh)


@functools.partial(jax.jit, donate_argnums=0)
def _put(buffer, features, position):
    return buffer.at[position].set(features.astype(jnp.float32))


@functools.partial(jax.jit, static_argnames="sharding", donate_argnums=0)
def _flatten(buffer, sharding):
    return jax.lax.with_sharding_constraint(buffer.reshape(-1, buffer.shape[-1]), sharding)


def _on_devices(x, mesh):
    """Host (N,) or (N, D) rows as a global array split by rows (N a multiple of the mesh)."""
    return jax.make_array_from_callback(x.shape, knn_lib.row_sharding(mesh), x.__getitem__)


@functools.partial(jax.jit, static_argnames="size")
def _rows(values, start, size):
    return jax.lax.dynamic_slice_in_dim(values, start, size)


def knn_predict(train: DeviceFeatures, test: DeviceFeatures, num_classes, k=200,
                temperature=0.07, chunk_size=256):
    """Weighted kNN predictions (``knn.py``) of every test row, on the host."""
    mesh = train.mesh
    labels = _on_devices(train.labels, mesh)
    norms = knn_lib._norms(train.values)
    predict = functools.partial(knn_lib.predict_chunk_sharded, mesh=mesh,
                                num_train=len(train.labels), num_classes=num_classes,
                                k=min(k, train.num_labelled), skip_unlabelled=True)
    replicated = NamedSharding(mesh, PartitionSpec())
    chunk_size = min(chunk_size, len(test.labels))
    out = []
    for start in range(0, len(test.labels), chunk_size):
        start = min(start, len(test.labels) - chunk_size)  # the last chunk overlaps
        chunk = jax.device_put(_rows(test.values, jnp.int32(start), chunk_size), replicated)
        out.append((start, predict(train.values, norms, labels, chunk, jnp.float32(temperature))))
    predictions = np.zeros(len(test.labels), np.int32)
    for start, p in out:
        predictions[start:start + chunk_size] = np.asarray(p.addressable_data(0))
    return predictions


def knn_top1(train, test, num_classes, k=200, temperature=0.07):
    predictions = knn_predict(train, test, num_classes, k, temperature)
    scored = test.labels >= 0
    return float(np.mean(predictions[scored] == test.labels[scored]))


def _moments(values, valid):
    """Mean and std (+1e-6, as ``linear.standardizer``) of the rows where ``valid``."""
    weight = valid.astype(jnp.float32)[:, None]
    count = jnp.sum(weight)
    mean = jnp.sum(values * weight, axis=0) / count
    var = jnp.sum(jnp.square(values - mean) * weight, axis=0) / count
    return mean, jnp.sqrt(var) + 1e-6


@functools.partial(jax.jit, static_argnames=("mesh", "num_classes", "steps", "batch_size"))
def _fit(values, labels, mean, std, *, mesh, num_classes, steps, batch_size, lr, weight_decay,
         seed):
    """``linear.train_logistic_regression`` on standardised row-split features: each device
    draws ``batch_size / d`` of its own rows per step (rows without a label weigh 0) and
    the loss is the mean over the labelled rows drawn on all devices."""
    axes, d = mesh.axis_names, mesh.size
    params = {"w": jnp.zeros((values.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
    tx = optax.adamw(optax.cosine_decay_schedule(lr, steps), weight_decay=weight_decay,
                     mask={"w": True, "b": False})
    local_batch = max(1, batch_size // d)
    full = batch_size >= values.shape[0]

    def local_sums(x, y, p, key):
        if not full:
            key = jax.random.fold_in(key, jax.lax.axis_index(axes))
            rows = jax.random.randint(key, (local_batch,), 0, x.shape[0])
            x, y = x[rows], y[rows]
        logits = ((x - mean) / std) @ p["w"] + p["b"]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(y, 0))
        valid = (y >= 0).astype(jnp.float32)
        return jax.lax.psum(jnp.sum(loss * valid), axes), jax.lax.psum(jnp.sum(valid), axes)

    spec = PartitionSpec(axes)
    sums = jax.shard_map(local_sums, mesh=mesh,
                         in_specs=(spec, spec, PartitionSpec(), PartitionSpec()),
                         out_specs=(PartitionSpec(), PartitionSpec()))

    def loss_fn(p, key):
        total, count = sums(values, labels, p, key)
        return total / jnp.maximum(count, 1.0)

    def step(i, carry):
        p, opt_state = carry
        grads = jax.grad(loss_fn)(p, jax.random.fold_in(jax.random.key(seed), i))
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state

    params, _ = jax.lax.fori_loop(0, steps, step, (params, tx.init(params)))
    return params


@jax.jit
def _correct(values, labels, mean, std, params):
    logits = ((values - mean) / std) @ params["w"] + params["b"]
    return jnp.sum((jnp.argmax(logits, -1) == labels) & (labels >= 0))


def _accuracy(test, moments, params):
    labels = _on_devices(test.labels, test.mesh)
    return float(_correct(test.values, labels, *moments, params)) / max(
        1, int(np.sum(test.labels >= 0)))


def linear_top1(train, test, num_classes, *, steps=1000, batch_size=1024, lr=0.01,
                weight_decay=1e-4, seed=0):
    """Test top-1 of the data-parallel linear probe on every labelled training row."""
    labels = _on_devices(train.labels, train.mesh)
    moments = _moments(train.values, labels >= 0)
    params = _fit(train.values, labels, *moments, mesh=train.mesh, num_classes=num_classes,
                  steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                  seed=seed)
    return _accuracy(test, moments, params)


@functools.partial(jax.jit, static_argnames="mesh")
def gather_rows(values, rows, *, mesh):
    """Rows ``rows`` (replicated) of row-split ``values``, on every device: each device
    contributes the rows it holds."""
    axes = mesh.axis_names

    def local(x, rows):
        start = jax.lax.axis_index(axes) * x.shape[0]
        mine = (rows >= start) & (rows < start + x.shape[0])
        picked = jnp.where(mine[:, None], x[jnp.clip(rows - start, 0, x.shape[0] - 1)], 0.0)
        return jax.lax.psum(picked, axes)

    return jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(axes), PartitionSpec()),
                         out_specs=PartitionSpec())(values, rows)


def fewshot_top1(train, test, num_classes, *, per_class=3, draws=5, seed=0, steps=1000,
                 batch_size=1024, lr=0.01, weight_decay=1e-4):
    """Mean and std over ``draws`` of the few-label probe (``linear.fewshot_accuracy``):
    ``per_class`` labelled rows of every class, standardised with all labelled rows."""
    from cl_jax.evaluation.linear import train_logistic_regression

    valid = _on_devices(train.labels, train.mesh) >= 0
    moments = _moments(train.values, valid)
    labelled = np.flatnonzero(train.labels >= 0)
    accuracies = []
    for draw in range(draws):
        rows = labelled[few_label_subset(train.labels[labelled], per_class, seed + draw)]
        picked = gather_rows(train.values, jnp.asarray(rows, jnp.int32), mesh=train.mesh)
        params = train_logistic_regression(
            (picked - moments[0]) / moments[1], jnp.asarray(train.labels[rows]), num_classes,
            steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            seed=seed + draw)
        accuracies.append(_accuracy(test, moments, params))
    return float(np.mean(accuracies)), float(np.std(accuracies))
