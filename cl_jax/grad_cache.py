"""GradCache: the exact full-batch gradient of a contrastive loss with one chunk's activations.

Gao, Zhang, Han & Callan 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup" (arXiv:2101.06983; luyug/GradCache; sentence-transformers'
``CachedMultipleNegativesRankingLoss`` and ``CachedGISTEmbedLoss`` do the same in PyTorch).
A contrastive loss couples every pair of rows, so the batch cannot be split into independent
micro-batches; but it couples them only through the embeddings. With the batch cut into
chunks ``x_c`` of K rows, ``e_c = f_theta(x_c, r_c)`` (``r_c`` the chunk's rng) and the loss
``L(theta, e_1, ..., e_C)``, the chain rule gives

    dL/dtheta = dL/dtheta|_e + sum_c  (de_c/dtheta)^T  dL/de_c,

computed in three passes:

1. embed every chunk in a ``lax.scan`` without differentiating it (nothing is kept but the
   embeddings);
2. differentiate ``L`` w.r.t. the parameters it reads directly (a learned temperature) and
   the cached embeddings: the N embeddings and their gradients are all that is held;
3. for each chunk, in a second ``lax.scan``, run the network again under ``jax.vjp`` with
   ``dL/de_c`` as the cotangent and add its parameter gradient to the running sum. Chunk
   ``c`` gets ``jax.random.fold_in(rng, c)`` in both passes, so its dropout masks are the same.

Peak memory is one chunk's activations plus the embeddings (and whatever the loss itself holds,
e.g. the N x N logits unless it is blockwise); the cost is one more forward pass, about a third
more arithmetic than a plain step. Everything is one jittable program, and its size and compile
time do not grow with N / K: the network is traced once per pass.

Chunks are strided: chunk ``c`` is rows ``c, c + C, c + 2 C, ...`` (``C = N / K`` chunks).
With the batch sharded by rows over d devices (contiguous blocks, as ``cl_jax.parallel``
shards it), every chunk then has ``K / d`` rows on each device (K a multiple of d), so each
chunk's forward and backward pass stay data-parallel and no rows move between devices
(contiguous chunks would each sit on one device: XLA then gathers them and every device
computes every chunk). The parameter gradient is all-reduced once per chunk, inside the
replay's scan.

Exactness: for a network without batch statistics the gradient equals the full-batch gradient
of the same objective with the same per-chunk rngs (``full_batch_value_and_grad``), up to
float summation order. BatchNorm (``has_state=True``, e.g. flax's ``mutable=["batch_stats"]``):
each chunk is normalised with the mean and variance of its own K rows in both passes, and the
running averages are updated once per chunk, in chunk order (``C`` momentum updates per step,
so after the step ``ra = m^C ra_0 + (1 - m) sum_c m^(C-1-c) stat_c``). The result is then
exactly the gradient and the state of ``full_batch_value_and_grad(..., has_state=True)``:
"ghost batch normalisation" with ghost batches of K rows (Hoffer, Hubara & Soudry 2017,
"Train longer, generalize better", arXiv:1705.08741), not BatchNorm over the N rows (whose
statistics, and so whose gradient, couple all N rows; the chunks' average variance also
lacks the spread between the chunks' means).

Usage. ``cached_embed`` is the core: a ``jax.custom_vjp`` function whose forward pass is pass 1
and whose backward pass is pass 3, so it drops into an existing ``jax.value_and_grad`` (e.g. a
method's loss under ``cl_jax.state``'s step): replace the network call by it and differentiate
as before; autodiff of the rest does pass 2, including losses on ``aux`` outputs such as the
online probe's logits, as long as they are part of the embeddings. ``grad_cache_value_and_grad``
is that wrapped in ``jax.value_and_grad``. ``embed_fn`` may close over constants and over
values of an enclosing ``jit`` (batch statistics, an EMA target), but not over values that are
being differentiated (a ``custom_vjp`` cannot see them; JAX raises ``UnexpectedTracerError``):
pass those in ``params``. No gradient flows to ``inputs``, ``rng`` or ``state``. E.g. in a
method's loss::

    encode = lambda p, tokens, r: network.apply({"params": p}, tokens, train=True,
                                                rngs={"dropout": r})
    z = cached_embed(encode, chunk_size)(params, tokens, rng)  # instead of encode(params, ...)
    loss = losses.info_nce(z[:n], z[n:], temperature)
"""

import jax
import jax.numpy as jnp


def num_chunks(inputs, chunk_size):
    """``N // chunk_size`` for ``inputs`` with leading batch axis N; ValueError if N differs
    between leaves or is not a multiple of ``chunk_size``."""
    sizes = {x.shape[0] if jnp.ndim(x) else None for x in jax.tree.leaves(inputs)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"grad cache: every input must have the same leading batch axis, got "
                         f"leading sizes {sorted(sizes, key=str)}.")
    (n,) = sizes
    if chunk_size < 1 or n % chunk_size:
        raise ValueError(f"grad cache: the batch of {n} rows is not divisible into chunks of "
                         f"chunk_size={chunk_size} rows.")
    return n // chunk_size


def to_chunks(tree, count):
    """(N, ...) leaves -> (count, N / count, ...): chunk ``c`` is rows ``c::count``."""
    return jax.tree.map(lambda x: jnp.swapaxes(x.reshape(-1, count, *x.shape[1:]), 0, 1), tree)


def from_chunks(tree):
    """The inverse of ``to_chunks``: (C, K, ...) leaves -> (C K, ...) in the original order."""
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:]), tree)


def chunk_rng(rng, c):
    """Chunk ``c``'s key, ``fold_in(rng, c)``; None for a deterministic network."""
    return None if rng is None else jax.random.fold_in(rng, c)


def _stateful(embed_fn, has_state):
    """``embed_fn`` as ``(params, state, chunk, rng) -> (embeddings, state)``."""
    if has_state:
        return embed_fn
    return lambda params, state, chunk, rng: (embed_fn(params, chunk, rng), state)


def _embed_chunks(embed, params, state, chunks, rng):
    """The chunks (C, K, ...) embedded in order, the state threaded through. Returns
    (embeddings (C, K, ...), final state)."""

    def step(state, xs):
        c, chunk = xs
        embeddings, state = embed(params, state, chunk, chunk_rng(rng, c))
        return state, embeddings

    count = jax.tree.leaves(chunks)[0].shape[0]
    state, embeddings = jax.lax.scan(step, state, (jnp.arange(count), chunks))
    return embeddings, state


def _replay(embed, params, state, chunks, rng, cotangents):
    """Pass 3: ``sum_c (de_c/dparams)^T cotangent_c``, one chunk's activations at a time. The
    state is threaded again from its initial value, so chunk ``c`` sees what it saw in pass 1."""

    def step(carry, xs):
        grads, state = carry
        c, chunk, cotangent = xs
        forward = lambda p: embed(p, state, chunk, chunk_rng(rng, c))
        _, vjp, state = jax.vjp(forward, params, has_aux=True)
        (chunk_grads,) = vjp(cotangent)
        return (jax.tree.map(jnp.add, grads, chunk_grads), state), None

    count = jax.tree.leaves(chunks)[0].shape[0]
    zeros = jax.tree.map(jnp.zeros_like, params)
    (grads, _), _ = jax.lax.scan(step, (zeros, state), (jnp.arange(count), chunks, cotangents))
    return grads


def _chunked(embed, chunk_size):
    """``(params, state, inputs, rng) -> (embeddings, state)``: pass 1, the chunks embedded
    one after another in a ``scan`` (so each chunk's random bits are drawn as in the replay:
    a ``vmap`` over keys is not bit-exact for the ``rbg`` generators). Differentiated as it is,
    it keeps every chunk's activations: the reference."""

    def fn(params, state, inputs, rng):
        chunks = to_chunks(inputs, num_chunks(inputs, chunk_size))
        embeddings, state = _embed_chunks(embed, params, state, chunks, rng)
        return from_chunks(embeddings), state

    return fn


def _cached(embed, chunk_size):
    """``cached_embed`` for a stateful ``embed`` (``_stateful``), in its signature."""

    cached = jax.custom_vjp(_chunked(embed, chunk_size))

    def forward(params, state, inputs, rng):
        return cached(params, state, inputs, rng), (params, state, inputs, rng)

    def backward(residuals, cotangents):
        params, state, inputs, rng = residuals
        count = num_chunks(inputs, chunk_size)
        grads = _replay(embed, params, state, to_chunks(inputs, count), rng,
                        to_chunks(cotangents[0], count))
        return grads, None, None, None

    cached.defvjp(forward, backward)

    def fn(params, state, inputs, rng):
        embeddings, state = cached(params, state, inputs, rng)
        return embeddings, jax.lax.stop_gradient(state)

    return fn


def cached_embed(embed_fn, chunk_size, has_state=False):
    """``embed_fn`` applied chunk by chunk, differentiable w.r.t. params with GradCache.

    ``embed_fn(params, chunk_inputs, chunk_rng) -> embeddings`` (a pytree of float arrays with
    leading axis = the chunk's rows), or with ``has_state=True``
    ``embed_fn(params, state, chunk_inputs, chunk_rng) -> (embeddings, new_state)``.
    Returns ``fn(params, inputs, rng) -> embeddings`` (with state: ``fn(params, state, inputs,
    rng) -> (embeddings, new_state)``): the embeddings of all N rows in their original order,
    chunk ``c`` (rows ``c::N/K``) embedded with ``jax.random.fold_in(rng, c)`` (``rng`` may be
    None). Its VJP replays the chunks (pass 3 in the module docstring) instead of keeping their
    activations. ``new_state`` carries no gradient.
    """
    fn = _cached(_stateful(embed_fn, has_state), chunk_size)
    if has_state:
        return fn
    return lambda params, inputs, rng: fn(params, None, inputs, rng)[0]


def _value_and_grad(embed, loss_fn, has_state):
    """``jax.value_and_grad`` of ``loss_fn(params, embed(params, ...))``, with the signatures
    that ``grad_cache_value_and_grad`` documents."""

    def objective(params, state, inputs, rng):
        embeddings, state = embed(params, state, inputs, rng)
        loss, aux = loss_fn(params, embeddings)
        return loss, (aux, state)

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def with_state(params, state, inputs, rng):
        (loss, (aux, state)), grads = grad_fn(params, state, inputs, rng)
        return (loss, aux), grads, state

    def stateless(params, inputs, rng):
        (loss, (aux, _)), grads = grad_fn(params, None, inputs, rng)
        return (loss, aux), grads

    return with_state if has_state else stateless


def grad_cache_value_and_grad(embed_fn, loss_fn, chunk_size, has_state=False):
    """The loss and its exact gradient w.r.t. params, holding one chunk's activations.

    ``embed_fn(params, chunk_inputs, chunk_rng) -> embeddings``: the network on ``chunk_size``
    rows (a pytree, e.g. ``{"image": ..., "text": ...}`` for CLIP or ``(z1, z2)`` for SimCSE's
    two dropout passes). ``loss_fn(params, embeddings) -> (loss, aux)``: the objective on the
    embeddings of the whole batch; it gets ``params`` too, so a learned temperature or logit
    scale gets its gradient directly. Returns ``fn(params, inputs, rng) -> ((loss, aux),
    grads)``, ``inputs`` a pytree with leading batch axis N, a multiple of ``chunk_size`` (else
    ValueError), chunk ``c`` = rows ``c::N/chunk_size`` with rng ``fold_in(rng, c)``.

    ``has_state=True`` (BatchNorm): ``embed_fn(params, state, chunk_inputs, chunk_rng) ->
    (embeddings, new_state)`` and ``fn(params, state, inputs, rng) -> ((loss, aux), grads,
    new_state)``, the state threaded through the chunks in order (see the module docstring
    for what that equals). Algorithm and memory: the module docstring.
    """
    return _value_and_grad(_cached(_stateful(embed_fn, has_state), chunk_size), loss_fn,
                           has_state)


def full_batch_value_and_grad(embed_fn, loss_fn, chunk_size, has_state=False):
    """The plain reference for ``grad_cache_value_and_grad`` (same arguments and results):
    the same chunks and per-chunk rngs, differentiated with every activation kept."""
    return _value_and_grad(_chunked(_stateful(embed_fn, has_state), chunk_size), loss_fn,
                           has_state)

