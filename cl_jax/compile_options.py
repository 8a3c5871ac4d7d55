"""XLA options for each compiled program (``jax.jit(..., compiler_options=...)``).

On a CPU, XLA (jaxlib 0.10) hands convolutions, matrix products, elementwise ops and
reductions to the YNNPACK library. For ResNets, Eigen's convolutions are faster. Measured on a
2-core AVX-512 CPU, forward and backward (benchmarks/RESULTS.md):

- ResNet-18 at 32 px and ResNet-50 at 224 px: 1.3x to 1.5x faster.
- ViTs, whose work is matrix products: 1.3x slower.
- The small ConvNet: no change.

``config.cpu_dot_library`` (a run option, not a property of the model) chooses the library
for convolutions and matrix products on a CPU:

- ``auto``: Eigen for ResNets, YNNPACK otherwise.
- ``eigen``: Eigen for every encoder.
- ``ynnpack``: YNNPACK for every encoder; this is XLA's default.

Elementwise ops and reductions stay with YNNPACK in every case. Accelerators get no options.
"""

import functools

import jax

CPU_DOT_LIBRARIES = ("auto", "eigen", "ynnpack")
# YNNPACK for elementwise ops and reductions only: convolutions and dots fall back to Eigen.
EIGEN_DOTS = {"xla_cpu_experimental_ynn_fusion_type":
              "LIBRARY_FUSION_TYPE_ELTWISE,LIBRARY_FUSION_TYPE_REDUCE"}


@functools.cache
def _xla_accepts(options):
    """Whether this jaxlib knows the options (they are experimental and may be renamed)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(1.0).compile()
    except Exception:  # noqa: BLE001 - an unknown option is an error from XLA
        return False
    return True


def for_encoder(encoder, cpu_dot_library="auto"):
    """Compiler options for a program that runs ``encoder`` (a ``models.ENCODERS`` name)."""
    if cpu_dot_library not in CPU_DOT_LIBRARIES:
        raise ValueError(f"cpu_dot_library must be one of {', '.join(CPU_DOT_LIBRARIES)}, got "
                         f"{cpu_dot_library!r}")
    if jax.default_backend() != "cpu" or cpu_dot_library == "ynnpack":
        return {}
    if cpu_dot_library == "auto" and not encoder.startswith("resnet"):
        return {}
    return dict(EIGEN_DOTS) if _xla_accepts(tuple(EIGEN_DOTS.items())) else {}


def for_run(config):
    """``for_encoder`` of a run config: its ``model.encoder`` and ``cpu_dot_library``."""
    return for_encoder(config.model.encoder, config.cpu_dot_library)
