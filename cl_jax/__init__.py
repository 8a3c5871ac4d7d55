"""cl_jax: contrastive and self-supervised representation learning in JAX/Flax."""

__version__ = "0.1.0"
