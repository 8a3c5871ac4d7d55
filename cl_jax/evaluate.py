"""Re-evaluates a run's latest checkpoint: ``python -m cl_jax.evaluate --workdir=runs/byol``.

Reads ``workdir/config.json``, restores the latest checkpoint, prints kNN, linear and
few-label linear top-1, and writes them to ``workdir/eval.json``.
"""

import os
import sys

from absl import app, flags, logging

from cl_jax import train
from cl_jax.checkpoint import Checkpointer
from cl_jax.encoder import run_config
from cl_jax.errors import UserError


def load_run(workdir):
    """The experiment of the run in ``workdir`` and its latest checkpointed state."""
    exp = train.create_experiment(run_config(workdir), workdir=workdir)
    checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"), 0)
    if checkpointer.latest_step is None:
        checkpointer.close()
        raise UserError(f"No checkpoint in {workdir}/checkpoints; train the run first.")
    state = checkpointer.restore_latest(train.initial_state(exp))
    checkpointer.close()
    return exp, state


def evaluate_workdir(workdir):
    exp, state = load_run(workdir)
    results = train.evaluate(exp, state, workdir=workdir)
    train.write_eval(workdir, int(state.step), results)
    print(train.summary_line(int(state.step), results), flush=True)
    return results


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if flags.FLAGS.workdir is None:
        raise app.UsageError("--workdir is required.")
    try:
        evaluate_workdir(flags.FLAGS.workdir)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    # Defined here, not at import: cl_jax.main defines its own --workdir.
    flags.DEFINE_string("workdir", None, "The workdir of a training run.")
    app.run(main)
