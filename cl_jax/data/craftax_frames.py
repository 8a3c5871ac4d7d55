"""Frames of Craftax-Classic (Matthews et al. 2024, "Craftax: A Lightning-Fast Benchmark for
Open-Ended Reinforcement Learning", ICML; the ``craftax`` package, ``pip install
'cl_jax[craftax]'``), the real data of CURL's preset.

Rollouts of a uniformly random policy in ``num_envs`` environments for ``num_steps`` steps
(pixel observations, 63x63 RGB, auto-reset), generated once, in one jitted ``lax.scan``, and
cached in ``data_dir/craftax/`` (written to a temporary file and renamed: a cache file is
whole or absent). Craftax renders with textures that it processes on first use and caches
in its own install directory; ``point_texture_cache`` moves that file into ``data_dir`` unless
the install already has one (``python -m cl_jax.data.craftax_frames --data_dir=DIR`` warms
both).

An example is ``frame_stack`` consecutive frames of one episode (never across a reset),
stacked on the channel axis (RGB of the oldest frame first). The label is the direction the
player faces (4 classes, visible in its sprite); ``Split.targets`` holds the player's
``intrinsics`` (health, food, drink and energy, over 9) and the ``light_level`` (day and
night) in the last frame. The last ``test_fraction`` of the environments are the test split.
"""

import argparse
import os

import numpy as np

from cl_jax.data.sources import DataError, in_memory_split

ENV_NAME = "Craftax-Classic-Pixels-v1"
SPLITS = ("train", "test")


def _craftax():
    try:
        from craftax.craftax_classic import constants
        from craftax.craftax_env import make_craftax_env_from_name
    except ImportError as err:
        raise DataError("data.source='craftax' needs the craftax package: pip install "
                        "'cl_jax[craftax]'.") from err
    return constants, make_craftax_env_from_name


def point_texture_cache(data_dir):
    """Craftax's texture cache file: its install directory's if it exists there (warmed),
    else ``data_dir/craftax/texture_cache_classic.pbz2``, so that nothing is written into
    the install."""
    constants, _ = _craftax()
    if not os.path.exists(constants.TEXTURE_CACHE_FILE):
        os.makedirs(os.path.join(data_dir, "craftax"), exist_ok=True)
        constants.TEXTURE_CACHE_FILE = os.path.join(data_dir, "craftax",
                                                    "texture_cache_classic.pbz2")
    return constants.TEXTURE_CACHE_FILE


def random_rollouts(num_envs, num_steps, seed):
    """``{'frames' (E, T, 63, 63, 3) uint8, 'done' (E, T) bool (episode ended after the
    frame), 'direction' (E, T), 'intrinsics' (E, T, 4), 'light_level' (E, T)}`` of a
    uniformly random policy."""
    import jax
    import jax.numpy as jnp

    _, make_env = _craftax()
    env = make_env(ENV_NAME, auto_reset=True)
    params = env.default_params
    num_actions = env.action_space(params).n

    def observe(obs, state):
        return {"frames": jnp.round(obs * 255).astype(jnp.uint8),
                "direction": state.player_direction,
                "intrinsics": jnp.stack([state.player_health, state.player_food,
                                         state.player_drink, state.player_energy], -1),
                "light_level": state.light_level}

    def step(carry, key):
        obs, state = carry
        act_key, step_key = jax.random.split(key)
        actions = jax.random.randint(act_key, (num_envs,), 0, num_actions)
        seen = jax.vmap(observe)(obs, state)
        obs, state, _, done, _ = jax.vmap(env.step, (0, 0, 0, None))(
            jax.random.split(step_key, num_envs), state, actions, params)
        return (obs, state), dict(seen, done=done)

    @jax.jit
    def run(key):
        reset_key, scan_key = jax.random.split(key)
        start = jax.vmap(env.reset, (0, None))(jax.random.split(reset_key, num_envs), params)
        _, out = jax.lax.scan(step, start, jax.random.split(scan_key, num_steps))
        return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), out)  # (E, T, ...)

    return jax.tree.map(np.asarray, jax.device_get(run(jax.random.PRNGKey(seed))))


def cached_rollouts(data_dir, num_envs, num_steps, seed, generate=random_rollouts):
    """The rollouts, from ``data_dir/craftax/`` or generated (by ``generate``) and cached."""
    directory = os.path.join(data_dir, "craftax")
    path = os.path.join(directory, f"classic_random_{num_envs}x{num_steps}_seed{seed}.npz")
    if not os.path.exists(path):
        if generate is random_rollouts:
            point_texture_cache(data_dir)
        made = generate(num_envs, num_steps, seed)
        os.makedirs(directory, exist_ok=True)
        temporary = f"{path}.tmp{os.getpid()}.npz"
        np.savez(temporary, **made)
        os.replace(temporary, path)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def stacks(rollouts, frame_stack, envs):
    """Frame stacks of the environments ``envs``: (images (N, H, W, 3 * frame_stack), labels,
    targets), each stack within one episode."""
    frames, done = rollouts["frames"][envs], rollouts["done"][envs]
    e, t = done.shape
    # A stack ending at frame j holds frames j - k + 1 .. j; a reset after any of its first
    # k - 1 frames breaks it.
    ends = np.arange(frame_stack - 1, t)
    broken = np.zeros((e, len(ends)), bool)
    for back in range(1, frame_stack):
        broken |= done[:, ends - back]
    env_index, end_index = np.nonzero(~broken)
    last = ends[end_index]
    images = np.concatenate([frames[env_index, last - back]
                             for back in range(frame_stack - 1, -1, -1)], axis=-1)
    pick = lambda name: rollouts[name][envs][env_index, last]
    labels = (pick("direction") - 1).astype(np.int32)
    targets = {"intrinsics": (pick("intrinsics") / 9.0).astype(np.float32),
               "light_level": pick("light_level").astype(np.float32)[:, None]}
    return images, labels, targets


def craftax_split(split, data_dir, num_envs=16, num_steps=1000, frame_stack=3, seed=0,
                  test_fraction=0.25, generate=random_rollouts):
    """A random-access split of Craftax-Classic frame stacks (see the module docstring)."""
    if split not in SPLITS:
        raise DataError(f"The craftax frames have splits {', '.join(SPLITS)}, not {split!r}.")
    if not data_dir:
        raise DataError("data.source='craftax' caches its rollouts in data.data_dir; set "
                        "--config.data.data_dir=DIR.")
    num_test = max(1, round(test_fraction * num_envs))
    if not 1 <= frame_stack < num_steps or num_test >= num_envs:
        raise DataError(f"craftax: frame_stack={frame_stack} must lie in [1, "
                        f"{num_steps}) and the {num_envs} environments must leave some for "
                        "training after the test fraction.")
    rollouts = cached_rollouts(data_dir, num_envs, num_steps, seed, generate)
    envs = np.arange(num_envs - num_test) if split == "train" else np.arange(
        num_envs - num_test, num_envs)
    images, labels, targets = stacks(rollouts, frame_stack, envs)
    made = in_memory_split(f"craftax/{split}", images, labels, num_classes=4)
    made.targets = targets
    made.provenance = dict(env=ENV_NAME, policy="uniform random", num_envs=num_envs,
                           num_steps=num_steps, seed=seed, frame_stack=frame_stack)
    return made


def main():
    parser = argparse.ArgumentParser(description="Warm Craftax's texture cache and cache the "
                                     "rollouts of the CURL preset.")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--num_envs", type=int, default=16)
    parser.add_argument("--num_steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("texture cache:", point_texture_cache(args.data_dir))
    made = cached_rollouts(args.data_dir, args.num_envs, args.num_steps, args.seed)
    print("rollouts:", {k: v.shape for k, v in made.items()})


if __name__ == "__main__":
    main()
