"""The presets train as the papers they cite did (docs/recipes.md), and that page is current.

Loss scale: under LARS a constant factor on the loss changes the update (it divides the relative
weight decay and multiplies the step of biases and norms), so the ImageNet SimCLR and DCL
presets must optimise the references' objectives, not just proportional ones. The references
are written out below in NumPy float64 from their code.
"""

import importlib.util
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO

from cl_jax import config_lib
from cl_jax.evaluation.registry import probe_steps
from cl_jax.methods.simclr import contrastive_loss


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def simclr_reference_objective(z1, z2, temperature):
    """google-research/simclr ``add_contrastive_loss`` (tf2/objective.py), one replica:
    ``loss_a`` / ``loss_b`` are the cross-entropies of each view of the pair against
    ``[logits_ab, logits_aa]`` with the self-similarity pushed down by 1e9; the objective is
    ``mean(loss_a + loss_b)``."""
    h1, h2 = unit_rows(z1), unit_rows(z2)
    n = len(h1)
    masks = np.eye(n) * 1e9
    labels = np.eye(n, 2 * n)
    logits_aa = h1 @ h1.T / temperature - masks
    logits_bb = h2 @ h2.T / temperature - masks
    logits_ab = h1 @ h2.T / temperature
    logits_ba = h2 @ h1.T / temperature
    loss_a = -(labels * log_softmax(np.concatenate([logits_ab, logits_aa], 1))).sum(1)
    loss_b = -(labels * log_softmax(np.concatenate([logits_ba, logits_bb], 1))).sum(1)
    return np.mean(loss_a + loss_b)


def dcl_reference_objective(z1, z2, temperature):
    """raminnakhli/Decoupled-Contrastive-Learning: ``DCL`` (loss/dcl.py, one direction, the
    anchor's own pair masked by a logit offset log(1e-45)) on normalised projections, summed
    over the two directions (experiment/simclr/main.py)."""

    def one_way(a, b):
        cross = a @ b.T
        positive = -np.diag(cross) / temperature
        negatives = np.concatenate([a @ a.T, cross], axis=1) / temperature
        negatives = negatives + np.tile(np.eye(len(a)), 2) * np.log(1e-45)
        top = negatives.max(axis=1, keepdims=True)
        lse = (top + np.log(np.exp(negatives - top).sum(axis=1, keepdims=True)))[:, 0]
        return np.mean(positive + lse)

    h1, h2 = unit_rows(z1), unit_rows(z2)
    return one_way(h1, h2) + one_way(h2, h1)


@pytest.fixture(scope="module")
def projections():
    rng = np.random.RandomState(0)
    return rng.normal(size=(6, 5)), rng.normal(size=(6, 5))


@pytest.mark.parametrize("name, reference", [("simclr", simclr_reference_objective),
                                              ("dcl", dcl_reference_objective)])
def test_imagenet_objective_is_the_references(name, reference, projections):
    z1, z2 = projections
    config = config_lib.load_config_file(f"{name}:imagenet").method
    expected = reference(z1, z2, config.temperature)
    got = contrastive_loss(config, jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_solo_learn_presets_keep_the_mean_over_the_views(projections):
    """solo-learn's ``simclr_loss_func`` is the mean over the 2N views: half the reference."""
    z1, z2 = projections
    config = config_lib.load_config_file("simclr:cifar10").method
    got = contrastive_loss(config, jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32))
    np.testing.assert_allclose(float(got), simclr_reference_objective(z1, z2, 0.2) / 2,
                               rtol=1e-5)


# The linear-evaluation epochs of the protocol behind each ImageNet preset's quoted number
# (docs/recipes.md, "Linear evaluation"); NNCLR, DCL, InstDisc and CPC: SimCLR's 90, unchecked.
LINEAR_EVAL_EPOCHS = {
    "simclr:imagenet": 90, "dcl:imagenet": 90, "byol:imagenet": 80, "mocov2:imagenet": 100,
    "mocov3:imagenet": 90, "mocov3:imagenet_vit": 90, "simsiam:imagenet": 90,
    "barlow_twins:imagenet": 100, "vicreg:imagenet": 100, "swav:imagenet": 100,
    "deepclusterv2:imagenet": 100, "dino:imagenet": 100, "dino:imagenet_vit": 100,
    "supcon:imagenet": 90, "nnclr:imagenet": 90, "instdisc:imagenet": 90,
    "cpc:imagenet": 90,
}


def test_every_imagenet_preset_sizes_its_probe_in_the_protocols_epochs():
    presets = {f"{name}:{p}" for name in config_lib.config_names()
               for p in config_lib.load_config_module(name).PRESETS if p.startswith("imagenet")}
    assert presets == set(LINEAR_EVAL_EPOCHS)
    for spec, epochs in LINEAR_EVAL_EPOCHS.items():
        probe = config_lib.load_config_file(spec).evals.linear
        assert (probe.epochs, probe.batch_size) == (epochs, 4096), spec
    # 90 passes over ImageNet's 1,281,167 training images at batch 4096.
    probe = config_lib.load_config_file("simclr:imagenet").evals.linear
    assert probe_steps(probe, 1281167) == math.ceil(90 * 1281167 / 4096) == 28151


def load_recipes_table():
    path = os.path.join(REPO, "benchmarks", "recipes_table.py")
    spec = importlib.util.spec_from_file_location("recipes_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_recipes_tables_are_current():
    table = load_recipes_table()
    with open(table.DOC) as f:
        doc = f.read()
    assert table.replace_between_markers(doc, table.render()) == doc, (
        "docs/recipes.md is stale: run python benchmarks/recipes_table.py --write")


def test_every_source_names_a_config_and_its_presets():
    table = load_recipes_table()
    for name, groups in table.SOURCES.items():
        presets = config_lib.load_config_module(name).PRESETS
        for group in groups:
            assert set(group) <= set(presets), (name, group)
