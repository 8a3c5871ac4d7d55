"""cl_jax: contrastive and self-supervised representation learning in JAX/Flax."""

__version__ = "0.1.0"


def __getattr__(name):
    # ``cl_jax.load_encoder`` without importing JAX on ``import cl_jax``.
    if name == "load_encoder":
        from cl_jax.encoder import load_encoder

        return load_encoder
    raise AttributeError(f"module 'cl_jax' has no attribute {name!r}")
