"""Command line: ``python -m cl_jax.main --config=byol[:preset] --workdir=runs/x``.

``--config`` names a packaged config (``cl_jax/configs/byol.py``, from any directory) or a
config file's path, e.g. ``configs/byol.py:cifar10`` in a checkout (``configs`` links to
``cl_jax/configs``) or a file of your own with a ``get_config(preset)``.

Any config field can be overridden, e.g. ``--config.batch_size=512``. Errors a user can fix
(missing data, bad config, an unknown field) are printed as one message, without a
traceback, with exit status 1. ``--list`` prints the methods and the configs' presets.

Multi-host: run the same command on every host. On a TPU pod and under SLURM (``srun``) the
processes find each other by themselves; elsewhere pass ``--coordinator_address=host:port``,
``--num_processes`` and ``--process_id`` (see ``launch/`` and docs/scaling.md).
"""

import difflib
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from cl_jax import config_lib, parallel
from cl_jax.errors import UserError


class ConfigParser(flags.ArgumentParser):
    """Parses ``--config`` with ``config_lib.load_config_file``: a packaged config's name or a
    file's path, each with an optional ``:preset``. Errors surface while flags are parsed."""

    def parse(self, spec):
        return config_lib.load_config_file(spec).lock()

    def flag_type(self):
        return "config object"


_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A packaged config's name or a config file's path, and a preset: "
    "byol:cifar10 or configs/byol.py:cifar10 (--list shows them).")
flags.FLAGS[_CONFIG.name].parser = ConfigParser()  # names as well as paths; locks the config
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, eval.json.")
_LIST = flags.DEFINE_bool("list", False, "Print the registered methods and every config's "
                          "presets, then exit.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "auto", ["auto", "on", "off"],
    "Multi-process JAX (jax.distributed.initialize). auto: on when --coordinator_address is "
    "given or a TPU pod / SLURM job is detected; on: always (auto-detecting what is not "
    "given); off: a single process.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0's coordinator (multi-process runs "
    "outside TPU pods and SLURM).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in all.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 .. N-1.")
_LOCAL_DEVICE_IDS = flags.DEFINE_list(
    "local_device_ids", None, "Devices this process uses, e.g. 0,1 (one process per GPU: the "
    "GPU's index). Default: all devices of the host.")


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def unknown_field_message(argv):
    """Names the overrides that match no config field, with the closest existing names."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return "an override names a config field that does not exist."
    names = config_lib.field_names(config_lib.load_config_file(spec))
    messages = []
    for arg in argv:
        match = re.match(r"--config\.([\w.]+)=", arg)
        if match and match.group(1) not in names:
            close = difflib.get_close_matches(match.group(1), names, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            messages.append(f"{spec} has no field {match.group(1)!r} (in {arg}).{hint}")
    return " ".join(messages) or "an override names a config field that does not exist."


def parse_flags(argv):
    """absl's flag parsing, with config errors turned into one message instead of a traceback."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        fail(str(err))
    except UserError as err:
        fail(str(err))
    except (AttributeError, KeyError):
        fail(unknown_field_message(argv))


def list_methods_and_configs():
    """What ``--list`` prints: the registered methods, then each packaged config's presets."""
    from cl_jax import methods

    lines = ["Methods (--config.method.name):", "  " + ", ".join(methods.METHODS), "",
             "Configs (--config=NAME[:PRESET]; in a checkout also --config=configs/NAME.py"
             "[:PRESET]; the first preset is the default):"]
    for name in config_lib.config_names():
        module = config_lib.load_config_module(name)
        method = module.get_config().method.name
        lines.append(f"  {name} (method {method}): {', '.join(module.PRESETS)}")
    return "\n".join(lines)


def initialize_distributed():
    """Starts multi-process JAX if asked to or if a TPU pod / SLURM job is detected."""
    explicit = dict(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                    process_id=_PROCESS_ID.value)
    if _LOCAL_DEVICE_IDS.value:
        explicit["local_device_ids"] = [int(i) for i in _LOCAL_DEVICE_IDS.value]
    given = {k: v for k, v in explicit.items() if v is not None}
    mode = _DISTRIBUTED.value
    if mode == "off":
        if given:
            fail("--distributed=off contradicts --coordinator_address / --num_processes / "
                 "--process_id / --local_device_ids; drop one or the other.")
        return
    if mode == "auto" and "coordinator_address" not in given \
            and not parallel.cluster_detected():
        if given:
            fail("--num_processes / --process_id / --local_device_ids need "
                 "--coordinator_address=host:port (process 0's host and a free port).")
        return
    try:
        parallel.initialize_distributed(**given)
    except (ValueError, RuntimeError) as err:
        fail(f"could not start multi-process JAX: {err}. Outside TPU pods and SLURM pass "
             "--coordinator_address=host:port --num_processes=N --process_id=I on every "
             "process (see launch/local.sh).")


def main(argv):
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if _LIST.value:
        print(list_methods_and_configs())
        return
    config = _CONFIG.value
    if config is None or _WORKDIR.value is None:
        fail("both --config and --workdir are required, e.g. "
             "--config=byol --workdir=runs/byol (--list shows the configs)")
    initialize_distributed()
    from cl_jax import train  # after jax.distributed.initialize, which must come first

    try:
        train.train_and_evaluate(config, _WORKDIR.value)
    except UserError as err:
        fail(str(err))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
