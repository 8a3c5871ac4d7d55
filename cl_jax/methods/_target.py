"""The EMA target (or teacher) network that BYOL, MoCo v2 / v3 and DINO keep in extra state.

The target holds copies of some of the online network's top-level modules (``modules``, e.g.
encoder and projector), updated after every optimizer step inside the jitted step:
``target <- decay * target + (1 - decay) * online`` (``optax.incremental_update``). Its
BatchNorm statistics are its own: it runs in training mode on each batch, as the references'
targets do.
"""

import jax.numpy as jnp
import optax


def momentum_schedule(step, total_steps, base, final=1.0):
    """``final - (final - base) * (cos(pi * step / total) + 1) / 2``: ``base`` at step 0,
    ``final`` at the end. With ``final = 1`` it is BYOL's target decay (Grill et al. 2020,
    section 3.2), also DINO's teacher momentum and MoCo v3's; constant if ``base == final``."""
    progress = jnp.minimum(step / total_steps, 1.0)
    return final - (final - base) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0


def init_target(params, batch_stats, modules, prefix="target"):
    """``{prefix}_params`` and ``{prefix}_batch_stats``: copies of the online ``modules``."""
    pick = lambda tree: {k: tree[k] for k in modules if k in tree}
    return {f"{prefix}_params": pick(params), f"{prefix}_batch_stats": pick(batch_stats)}


def update_target(target_params, params, decay):
    """EMA of the online parameters of the target's modules, with weight ``decay`` on the old."""
    online = {k: params[k] for k in target_params}
    return optax.incremental_update(online, target_params, step_size=1.0 - decay)
