"""Command line: ``python -m cl_jax.main --config=configs/byol.py[:preset] --workdir=runs/x``.

Any config field can be overridden, e.g. ``--config.batch_size=512``. Errors a user can fix
(missing data, bad config, an unknown field) are printed as one message, without a
traceback, with exit status 1. ``--list`` prints the methods and the configs' presets.

Multi-host: run the same command on every host. On a TPU pod and under SLURM (``srun``) the
processes find each other by themselves; elsewhere pass ``--coordinator_address=host:port``,
``--num_processes`` and ``--process_id`` (see ``launch/`` and docs/scaling.md).
"""

import difflib
import glob
import importlib.util
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from cl_jax import config_lib, parallel
from cl_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file and preset, e.g. configs/byol.py:cifar10.", lock_config=True)
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


def config_presets(path):
    """The presets ``path``'s ``get_config`` accepts, default first.

    A config file may list them in a module-level ``PRESETS`` tuple; otherwise the candidates
    are ``config_lib.PRESETS`` plus the names its docstring describes (lines such as
    ``cifar10, cifar100 — ...``), and a candidate counts if ``get_config`` accepts it.
    """
    spec = importlib.util.spec_from_file_location("cl_jax_listed_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    default = module.get_config()
    if hasattr(module, "PRESETS"):
        return tuple(module.PRESETS), default.method.name
    described = re.findall(r"^([a-z][\w-]*(?:, [a-z][\w-]*)*)(?: \(default\))? [—-]+ ",
                           module.__doc__ or "", re.MULTILINE)
    candidates = [n for line in described for n in line.split(", ")]
    candidates += [n for n in config_lib.PRESETS if n not in candidates]
    presets = []
    for name in candidates:
        try:
            module.get_config(name)
        except Exception:  # noqa: BLE001 - any failure means the preset is not offered
            continue
        presets.append(name)
    return tuple(presets), default.method.name


def list_methods_and_configs(config_dir=None):
    """What ``--list`` prints: registered methods, then each config file with its presets."""
    from cl_jax import methods

    config_dir = config_dir or os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "configs")
    lines = ["Methods (--config.method.name):", "  " + ", ".join(methods.METHODS), "",
             "Configs (--config=FILE[:PRESET], the first preset is the default):"]
    for path in sorted(glob.glob(os.path.join(config_dir, "*.py"))):
        shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
        try:
            presets, method = config_presets(path)
        except Exception as err:  # noqa: BLE001 - report a broken file, keep listing
            lines.append(f"  {shown}: cannot be loaded ({type(err).__name__}: {err})")
            continue
        lines.append(f"  {shown} (method {method}): {', '.join(presets)}")
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
             "--config=configs/byol.py --workdir=runs/byol (--list shows the configs)")
    try:
        config.keys()  # config_flags reports a file that failed to load on first use
    except OSError as err:
        fail(f"cannot load the config file: {err.__cause__ or err}".strip() +
             "\nConfigs live in configs/, e.g. --config=configs/byol.py:cifar10.")
    initialize_distributed()
    from cl_jax import train  # after jax.distributed.initialize, which must come first

    try:
        train.train_and_evaluate(config, _WORKDIR.value)
    except UserError as err:
        fail(str(err))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
