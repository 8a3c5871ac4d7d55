"""Post-processing of frozen sentence embeddings before STS cosine scoring: whitening and
BERT-flow.

Whitening (Su et al. 2021, "Whitening Sentence Representations for Better Semantics and
Faster Retrieval", arXiv:2103.15316; reference code ``compute_kernel_bias`` in
github.com/bojone/BERT-whitening) maps the embeddings by one affine map to zero mean and
identity covariance; keeping the first k columns (whitening-k) also reduces the dimension.

BERT-flow (Li et al. 2020, "On the Sentence Embeddings from Pre-trained Language Models",
arXiv:2011.05864; reference github.com/bohanli/BERT-flow) fits a Glow (Kingma & Dhariwal
2018, arXiv:1807.03039) to the frozen embeddings by maximum likelihood and scores STS by the
cosine of the Gaussian latents z. Each of the K steps here is Glow's

    actnorm:   y = (x + b) * exp(logs)                            log|det| = sum(logs)
    linear:    y = x @ W,  W = P L (U + diag(sign * exp(log_s)))  log|det| = sum(log_s)
    coupling:  y1 = x1,  y2 = (x2 + t(x1)) * sigmoid(h(x1) + 2)   log|det| = sum(log sigmoid)

with a standard normal base: log p(x) = log N(f(x); 0, I) + sum of the steps' log|det|.
The invertible D x D linear map ("1x1 convolution" on a 1x1 image) is LU-parametrised as in
Glow (P and sign fixed at a random rotation's PLU decomposition): its log-determinant costs
O(D) and it cannot become singular. Glow's actnorm log-scale factor (3) is left out.

The reference flow differs: 3 levels of 3 steps with Glow's multi-scale split, additive
coupling, a fixed reversed permutation in place of the learned linear map, 32-wide coupling
nets, Adam at lr 1e-3 for one epoch of STS sentence pairs at batch size 32
(``config_l3_d3_w32``, ``run_siamese.py``). The defaults here (4 steps, 64-wide nets, 300
Adam steps of 256 rows at lr 1e-3) fit 3000 128-dimensional embeddings in about 2 s on two
CPU cores, after a few seconds of one-off compilation.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.linalg

WHITENING_EPS = 1e-12  # floor on covariance singular values, relative to the largest


def whitening(x, dim=None, eps=WHITENING_EPS):
    """Mean (D,) and whitening kernel W (D, k) of the rows of ``x`` (N, D), as Su et al. 2021.

    mu = mean of the rows, Sigma = (x - mu)^T (x - mu) / (N - 1) (``np.cov``, as the
    reference), Sigma = U diag(S) U^T by SVD, W = U diag(S^-1/2)[:, :dim]; then
    ``(x - mu) @ W`` has identity (N - 1)-normalised covariance (its top ``dim`` principal
    directions when ``dim`` is given). Singular values below ``eps * S[0]`` (directions the
    data does not span, e.g. N <= D) are raised to it, so W stays finite.

    Float64 NumPy on the host: S^-1/2 amplifies relative errors in the small singular
    values, which span several orders of magnitude for anisotropic language-model
    embeddings, and one D x D SVD per evaluation is cheap next to encoding the sentences.
    """
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False)
    u, s, _ = np.linalg.svd(cov)
    w = u / np.sqrt(np.maximum(s, eps * s[0]))
    return mean, w[:, :dim]


def apply_whitening(x, mean, w):
    """(x - mean) @ W: the whitened (N, k) embeddings, float64."""
    return (np.asarray(x, np.float64) - mean) @ w


# BERT-flow ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Flow:
    """A fitted flow: ``params`` (trained) and ``consts`` (the fixed P and sign of the linear
    maps), pytrees whose leaves stack the K steps along their first axis."""

    params: dict
    consts: dict

    def forward(self, x):
        """x (N, D) -> (z (N, D), log|det dz/dx| (N,))."""
        return _forward(self.params, self.consts, jnp.asarray(x))

    def inverse(self, z):
        """z (N, D) -> x (N, D), the step maps undone in reverse order."""
        return _inverse(self.params, self.consts, jnp.asarray(z))

    def log_likelihood(self, x):
        """log p(x) (N,) in nats: log N(z; 0, I) + log|det dz/dx|."""
        return _log_likelihood(self.params, self.consts, jnp.asarray(x))


def _linear_matrix(p, c):
    d = p["log_s"].shape[0]
    lower = jnp.tril(p["lower"], -1) + jnp.eye(d, dtype=p["lower"].dtype)
    upper = jnp.triu(p["upper"], 1) + jnp.diag(c["sign"] * jnp.exp(p["log_s"]))
    return c["perm"] @ lower @ upper


def _coupling_net(p, x1):
    h = jax.nn.relu(x1 @ p["w1"] + p["b1"])
    h = jax.nn.relu(h @ p["w2"] + p["b2"])
    shift, logit = jnp.split(h @ p["w3"] + p["b3"], 2, axis=-1)
    return shift, logit + 2.0  # Glow's sigmoid(h + 2): scale near 1 at init, never 0


def _step_forward(p, c, x):
    an = p["actnorm"]
    x = (x + an["bias"]) * jnp.exp(an["logs"])
    x = x @ _linear_matrix(p["linear"], c)
    x1, x2 = jnp.split(x, [x.shape[-1] // 2], axis=-1)
    shift, scale_logit = _coupling_net(p["coupling"], x1)
    y = jnp.concatenate([x1, (x2 + shift) * jax.nn.sigmoid(scale_logit)], axis=-1)
    logdet = (jnp.sum(an["logs"]) + jnp.sum(p["linear"]["log_s"])
              + jnp.sum(jax.nn.log_sigmoid(scale_logit), axis=-1))
    return y, logdet


def _step_inverse(p, c, y):
    y1, y2 = jnp.split(y, [y.shape[-1] // 2], axis=-1)
    shift, scale_logit = _coupling_net(p["coupling"], y1)
    x = jnp.concatenate([y1, y2 / jax.nn.sigmoid(scale_logit) - shift], axis=-1)
    x = jnp.linalg.solve(_linear_matrix(p["linear"], c).T, x.T).T
    an = p["actnorm"]
    return x * jnp.exp(-an["logs"]) - an["bias"]


def _flow_forward(params, consts, x):
    def step(h, pc):
        return _step_forward(*pc, h)

    z, logdets = jax.lax.scan(step, x, (params, consts))
    return z, jnp.sum(logdets, axis=0)


def _flow_log_likelihood(params, consts, x):
    z, logdet = _flow_forward(params, consts, x)
    return -0.5 * jnp.sum(z**2, axis=-1) - 0.5 * z.shape[-1] * jnp.log(2 * jnp.pi) + logdet


@jax.jit
def _inverse(params, consts, z):
    def step(h, pc):
        return _step_inverse(*pc, h), None

    return jax.lax.scan(step, z, (params, consts), reverse=True)[0]


_forward = jax.jit(_flow_forward)
_step = jax.jit(_step_forward)
_log_likelihood = jax.jit(_flow_log_likelihood)


def _init_step(rng, h, hidden):
    """One step's parameters and constants, on the host: the linear map at the PLU
    decomposition of a random rotation, the coupling's last layer zero, the actnorm
    standardising the data ``h`` that reaches it (Glow's data-dependent initialisation)."""
    d = h.shape[-1]
    d1, d2 = d // 2, d - d // 2
    perm, lower, upper = scipy.linalg.lu(np.linalg.qr(rng.standard_normal((d, d)))[0])
    diag = np.diag(upper)
    lecun = lambda fan_in, fan_out: rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
    p = {
        "actnorm": {"bias": -h.mean(0), "logs": -np.log(h.std(0) + 1e-6)},
        "linear": {"lower": np.tril(lower, -1), "upper": np.triu(upper, 1),
                   "log_s": np.log(np.abs(diag))},
        "coupling": {"w1": lecun(d1, hidden), "b1": np.zeros(hidden),
                     "w2": lecun(hidden, hidden), "b2": np.zeros(hidden),
                     "w3": np.zeros((hidden, 2 * d2)), "b3": np.zeros(2 * d2)},
    }
    c = {"perm": perm, "sign": np.sign(diag)}
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), (p, c))


def init_flow(x, *, num_layers, hidden, seed):
    """A flow of ``num_layers`` steps whose actnorms standardise ``x`` where they sit."""
    rng = np.random.default_rng(seed)
    h = jnp.asarray(x, jnp.float32)
    steps = []
    for _ in range(num_layers):
        p, c = _init_step(rng, np.asarray(h, np.float64), hidden)
        h = _step(p, c, h)[0]
        steps.append((p, c))
    params, consts = jax.tree.map(lambda *layers: jnp.stack(layers), *steps)
    return Flow(params, consts)


@functools.partial(jax.jit, static_argnames=("batch_size",), donate_argnums=(0, 1))
def _train_step(params, opt_state, consts, x, key, step, lr, *, batch_size):
    """One Adam step on the mean negative log-likelihood per dimension of a random batch."""
    rows = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, x.shape[0])
    nll = lambda p: -jnp.mean(_flow_log_likelihood(p, consts, x[rows])) / x.shape[1]
    updates, opt_state = optax.adam(lr).update(jax.grad(nll)(params), opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def fit_flow(x, *, steps=300, num_layers=4, hidden=64, lr=1e-3, batch_size=256, seed=0):
    """A Glow fitted to the rows of ``x`` (N, D) by maximum likelihood (Adam, float32).

    Actnorms are initialised on ``x``; each step draws ``batch_size`` rows with replacement.
    ``steps=0`` returns the initialised flow. See the module docstring for the defaults and
    the BERT-flow paper's settings.
    """
    x = jnp.asarray(x, jnp.float32)
    flow = init_flow(x, num_layers=num_layers, hidden=hidden, seed=seed)
    params, opt_state = flow.params, optax.adam(lr).init(flow.params)
    key = jax.random.fold_in(jax.random.key(seed), 1)
    for step in range(steps):
        params, opt_state = _train_step(params, opt_state, flow.consts, x, key, step, lr,
                                        batch_size=min(batch_size, x.shape[0]))
    return Flow(params, flow.consts)


def flow_transform(flow, x):
    """The flow's latents z (N, D) of ``x`` on the host: the vectors BERT-flow scores by cosine."""
    return np.asarray(flow.forward(x)[0])
