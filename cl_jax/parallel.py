"""Mesh, shardings, host-local batch -> global array, multi-host initialisation.

One ``jax.sharding.Mesh`` with a single ``data`` axis over all devices of all processes.
Batches are sharded along it (``P('data')``), the train state is replicated (``P()``), and
``jax.jit`` inserts the collectives: a loss over the global batch sees every device's
examples, and BatchNorm computes global statistics.

With ``shard_state`` the train state is instead sharded along the same axis, FSDP-style
(ZeRO-3): each array is split along its largest dimension that the device count divides,
and ``jax.jit`` gathers the parameters where the step needs them and scatters the
gradients. The numbers are those of the replicated step; the memory per device is about
``1 / num_devices`` of the state.
"""

import itertools
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cl_jax.errors import ConfigError

DATA_AXIS = "data"


def create_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``data`` over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def fsdp_spec(shape, num_devices) -> PartitionSpec:
    """``P`` splitting the largest dimension of ``shape`` that ``num_devices`` divides.

    Ties go to the last such dimension (a kernel's output features); an array with no such
    dimension (scalars, small or odd-sized vectors) is replicated.
    """
    dims = [i for i, n in enumerate(shape) if n % num_devices == 0 and n >= num_devices]
    if num_devices == 1 or not dims:
        return PartitionSpec()
    axis = max(dims, key=lambda i: (shape[i], i))
    return PartitionSpec(*[DATA_AXIS if i == axis else None for i in range(len(shape))])


def state_sharding(abstract_state, mesh: Mesh, shard: bool = False):
    """The train state's shardings: all replicated, or FSDP-style with ``shard=True``."""
    if not shard:
        return jax.tree.map(lambda _: replicated(mesh), abstract_state)
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, mesh.size)),
                        abstract_state)


def local_batch_size(global_batch_size: int, mesh: Mesh, name: str = "batch_size") -> int:
    """This process's share of the global batch; a clear error if it does not divide."""
    if global_batch_size <= 0 or global_batch_size % mesh.size:
        processes = jax.process_count()
        where = (f"{mesh.size} devices over {processes} processes" if processes > 1
                 else f"{mesh.size}")
        raise ConfigError(
            f"{name}={global_batch_size} must be a positive multiple of the number of "
            f"devices ({where}); set e.g. --config.{name}="
            f"{max(1, round(global_batch_size / mesh.size)) * mesh.size}.")
    return global_batch_size // jax.process_count()


SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                   "SLURM_LOCALID")


def cluster_detected():
    """'slurm' or 'tpu' where ``jax.distributed.initialize()`` can find its peers by itself.

    SLURM: a job step started by ``srun`` (its variables are set). TPU: a Cloud TPU VM (JAX
    asks the metadata server for the pod's workers). None elsewhere, e.g. on a laptop.
    """
    if all(name in os.environ for name in SLURM_VARIABLES):
        return "slurm"
    try:
        # JAX has no public cluster detection: its own TPU checks (GKE's environment, GCE's
        # metadata server) are the only ones that agree with jax.distributed.initialize().
        from jax._src.clusters import GceTpuCluster, GkeTpuCluster
    except ImportError:
        return "tpu" if os.environ.get("TPU_WORKER_HOSTNAMES") else None
    return "tpu" if GkeTpuCluster.is_env_present() or GceTpuCluster.is_env_present() else None


def initialize_distributed(**kwargs):
    """``jax.distributed.initialize(**kwargs)``: call it once, before anything else uses JAX.

    Without arguments JAX detects a TPU pod or SLURM job; on CPU the processes' collectives
    go over gloo (JAX's default).
    """
    jax.distributed.initialize(**kwargs)


def to_global(local_batch, mesh: Mesh):
    """Assembles host-local numpy arrays (this process's rows) into global sharded arrays."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x),
                        local_batch)


_barriers = itertools.count()


def barrier(name, timeout_s=1800):
    """Waits until every process gets here (a no-op with one process).

    Uses the coordination service that ``jax.distributed.initialize`` started, not a
    collective such as ``multihost_utils.sync_global_devices``: on CPU, gloo gives up on a
    collective whose peers arrive more than 30 s apart, which a slow compilation on one host
    causes. JAX has no public handle on that service; Orbax's public barrier is one.
    """
    if jax.process_count() == 1:
        return
    from orbax.checkpoint import multihost  # imported here: main imports this module early

    wait = multihost.get_barrier_sync_fn()
    wait(key=f"cl_jax/{name}/{next(_barriers)}", timeout_ms=timeout_s * 1000)


def compile_together(jitted, *args):
    """``jitted`` compiled for ``args``, returned once every process has compiled it.

    The first run of a step then starts at about the same time on every process.
    """
    compiled = jitted.lower(*args).compile()
    barrier("compiled")
    return compiled


def to_host(x):
    """A global (possibly multi-host) array as one numpy array on every process."""
    if jax.process_count() == 1:
        return np.asarray(jax.device_get(x))
    barrier("to_host")  # each process has computed x (and compiled what made it)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
