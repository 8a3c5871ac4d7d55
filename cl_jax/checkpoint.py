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
import jax.numpy as jnp
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from cl_jax.errors import UserError


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
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(
                f"The checkpoint of step {step} in {self.directory} does not fit this run's "
                f"state (another method or model wrote it): {str(err).splitlines()[0]} Use "
                "a new --workdir, or the config of the run that wrote it.") from err

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


def load_modules(workdir, modules, params, batch_stats):
    """``params`` / ``batch_stats`` with the top-level ``modules`` replaced by those of the
    latest checkpoint of the run in ``workdir`` (``model.init_from``: LiT's locked image tower).

    One ``UserError`` if the run has no checkpoint, lacks a module, or its module's shapes
    differ from this network's (another encoder or width).
    """
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    manager = ocp.CheckpointManager(directory) if os.path.isdir(directory) else None
    step = manager.latest_step() if manager else None
    if step is None:
        raise UserError(f"model.init_from={workdir!r} has no checkpoint in {directory}; point it "
                        "at the --workdir of a finished cl_jax run.")
    saved = manager.restore(step, args=ocp.args.StandardRestore())
    manager.close()
    params, batch_stats = dict(params), dict(batch_stats)
    for module in modules:
        if module not in saved["params"]:
            raise UserError(f"The run in {workdir} has no module {module!r} to initialise from "
                            f"(it has {', '.join(sorted(saved['params']))}).")
        for ours, theirs, kind in ((params, saved["params"], "parameters"),
                                   (batch_stats, saved.get("batch_stats") or {}, "statistics")):
            if module not in ours:
                continue
            want = jax.tree.map(lambda x: x.shape, ours[module])
            got = jax.tree.map(lambda x: x.shape, theirs.get(module, {}))
            if want != got:
                raise UserError(f"The {module} {kind} of the run in {workdir} do not fit this "
                                f"network's: saved {got}, expected {want}. Give this run the "
                                "same model fields (model.encoder, model.widths, ...) as that one.")
            ours[module] = jax.tree.map(lambda x, y: jnp.asarray(y, x.dtype), ours[module],
                                        theirs[module])
    return params, batch_stats


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
