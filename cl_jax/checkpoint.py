"""Checkpoints with Orbax: periodic, atomic, resumable; SIGTERM / Ctrl-C save before exit.

Orbax writes each checkpoint into a temporary directory (``<step>.orbax-checkpoint-tmp-*``)
and renames it to ``<step>`` when complete (on object stores, where a rename is not atomic,
it writes a commit marker last). A run killed mid-save, even by SIGKILL, leaves the previous
checkpoint intact: the restart ignores the unfinished directory, deletes it, and resumes
from the latest complete checkpoint. Saves are asynchronous by default
(``config.checkpoint_async``): training continues while the state is written; ``close``
waits for the last one. Every process of a multi-host run takes part in each save and
restore; Orbax writes each array shard once.
"""

import os
import signal

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


class Checkpointer:
    """Saves the train state under ``directory`` every ``every_steps`` steps."""

    def __init__(self, directory, every_steps, max_to_keep=3, asynchronous=True):
        self.directory = directory
        self.every_steps = every_steps
        self._manager = ocp.CheckpointManager(
            directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                 enable_async_checkpointing=asynchronous,
                                                 cleanup_tmp_directories=True))

    @property
    def latest_step(self):
        return self._manager.latest_step()

    def restore_latest(self, state):
        """The latest saved state (with the shardings of ``state``), or ``state`` if none."""
        step = self._manager.latest_step()
        if step is None:
            return state
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def due(self, step):
        """Whether ``step`` is a multiple of ``every_steps``."""
        return self.every_steps > 0 and step % self.every_steps == 0

    def save(self, step, state, force=False):
        """Saves if ``step`` is a multiple of ``every_steps`` (or ``force``) and not saved yet."""
        if (self.due(step) or force) and step not in self._manager.all_steps():
            self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def close(self):
        self._manager.wait_until_finished()
        self._manager.close()


class PreemptionGuard:
    """Turns SIGTERM and SIGINT into a stop at a step all processes agree on.

    One process: the signal sets a flag that ``should_stop`` reports at the next step. Many
    processes: JAX's preemption service (started by ``jax.distributed.initialize``) catches
    SIGTERM on any process and picks the next step every process can reach, and
    ``should_stop`` is True there on all of them, so they save the same step together;
    SIGINT (Ctrl-C) is forwarded to it as a SIGTERM. A second signal restores the default
    behaviour (a second Ctrl-C interrupts at once).
    """

    def __init__(self):
        self.requested = None
        self._previous = {}
        self._multiprocess = jax.process_count() > 1

    def _handle(self, signum, frame):
        self.requested = signal.Signals(signum).name
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._multiprocess:
            os.kill(os.getpid(), signal.SIGTERM)  # to JAX's preemption service

    def should_stop(self, step):
        """Called after every step: whether to save and exit now."""
        if self._multiprocess:
            if multihost_utils.reached_preemption_sync_point(step):
                self.requested = self.requested or "SIGTERM"
                return True
            return False
        return self.requested is not None

    def __enter__(self):
        signals = (signal.SIGINT,) if self._multiprocess else (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
