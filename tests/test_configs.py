"""The configs ship inside the package (``cl_jax/configs``) and load by name or by path.

Loading a config only builds a ConfigDict: nothing here compiles or trains.
"""

import os
import subprocess
import sys

import pytest
import setuptools
from conftest import REPO

from cl_jax import config_lib, methods
from cl_jax.errors import ConfigError

CONFIG_DIR = os.path.join(REPO, "cl_jax", "configs")
NAMES = sorted(f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith(".py") and f[0] != "_")
MODULES = {name: config_lib.load_config_module(name) for name in NAMES}
ALL_PRESETS = sorted({p for m in MODULES.values() for p in m.PRESETS} | set(config_lib.PRESETS))


def test_the_packaged_configs_are_the_files_of_cl_jax_configs():
    assert config_lib.config_names() == NAMES
    assert {"byol", "simclr", "dcl", "dino", "mocov3"} <= set(NAMES)
    assert os.path.samefile(os.path.join(REPO, "configs"), CONFIG_DIR)  # the checkout's link


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_loads_by_name_and_by_path(name):
    presets = MODULES[name].PRESETS
    # The default is the embedded data set of the method's modality.
    assert presets[0] in ("digits", "moving_digits", "glyphs", "wordnet", "pydoc") \
        and len(set(presets)) == len(presets)
    loaded = {}
    for preset in presets:
        by_name = config_lib.load_config_file(f"{name}:{preset}")
        by_path = config_lib.load_config_file(f"{REPO}/configs/{name}.py:{preset}")
        assert by_name.to_dict() == by_path.to_dict()
        assert by_name.method.name in methods.METHODS
        loaded[preset] = by_name.to_dict()
    assert config_lib.load_config_file(name).to_dict() == loaded[presets[0]]
    # A preset that changed nothing would be a dead branch of get_config.
    assert len({repr(sorted(c.items())) for c in loaded.values()}) == len(presets)


@pytest.mark.parametrize("name", NAMES)
def test_presets_are_exactly_what_get_config_accepts(name):
    module = MODULES[name]
    for preset in ALL_PRESETS:
        if preset in module.PRESETS:
            module.get_config(preset)
        else:
            with pytest.raises(ConfigError):
                module.get_config(preset)


def test_names_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = config_lib.load_config_file("byol:cifar10")
    assert (config.method.name, config.data.name, config.model.encoder) == (
        "byol", "cifar10", "resnet18")
    assert config_lib.load_config_file("dcl:imagenet").method.loss == "dcl"
    with pytest.raises(ConfigError, match="No config file at 'configs/byol.py'.*byol"):
        config_lib.load_config_file("configs/byol.py")


def test_unknown_name_or_preset_is_one_error_listing_the_choices():
    with pytest.raises(ConfigError, match="No config named 'byl'; choose one of amdim, "
                                          "barlow_twins, byol, cert, clip, cmc, cpc, "):
        config_lib.load_config_file("byl:cifar10")
    with pytest.raises(ConfigError, match="byol has no preset 'imagenet_vit'; choose one of "
                                          "digits, cifar10, cifar100, stl10, imagenet, folder."):
        config_lib.load_config_file("byol:imagenet_vit")
    with pytest.raises(ConfigError, match="has no preset 'cifar'"):
        config_lib.load_config_file(f"{REPO}/configs/mocov3.py:cifar")


def test_a_config_file_of_ones_own_without_presets_takes_any_argument(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("import ml_collections\n\n\ndef get_config(preset='a'):\n"
                    "    return ml_collections.ConfigDict(dict(preset=preset))\n")
    assert config_lib.load_config_file(str(path)).preset == "a"
    assert config_lib.load_config_file(f"{path}:anything").preset == "anything"


def test_list_shows_every_config_with_its_presets():
    from cl_jax import main

    lines = main.list_methods_and_configs().splitlines()
    assert lines[1] == "  " + ", ".join(methods.METHODS)
    shown = {line.split()[0]: line for line in lines[4:]}
    assert sorted(shown) == NAMES
    assert shown["byol"] == ("  byol (method byol): digits, cifar10, cifar100, stl10, imagenet, "
                             "folder")
    assert shown["dcl"].startswith("  dcl (method simclr): digits,")
    assert shown["mocov3"].endswith(": digits, cifar10, cifar100, stl10, imagenet, folder, "
                                    "imagenet_vit")
    for name in NAMES:
        assert shown[name].endswith("): " + ", ".join(MODULES[name].PRESETS))


def test_the_command_line_takes_a_name_outside_the_checkout(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "cl_jax.main", "--config=byol:bogus",
                             f"--workdir={tmp_path / 'run'}"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: Config byol has no preset 'bogus'; choose one of "
                                      "digits, cifar10, cifar100, stl10, imagenet, folder.")
    assert not (tmp_path / "run").exists()


def test_a_non_editable_install_includes_the_configs():
    assert os.path.exists(os.path.join(CONFIG_DIR, "__init__.py"))
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        find = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]
    assert "cl_jax.configs" in setuptools.find_packages(str(REPO), include=find["include"])
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:  # the embedded WordNet too
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["cl_jax.data"]
    for name in data:
        assert os.path.exists(os.path.join(REPO, "cl_jax", "data", name))
    assert "wordnet30/wordnet30.tsv.xz" in data
