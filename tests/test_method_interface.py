"""The method interface: BatchNorm grouping of views, config validation before anything is
written, and what a method's loss is given."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch, tiny_config

from cl_jax import methods, train
from cl_jax.errors import ConfigError
from cl_jax.methods.base import apply_to_views
from cl_jax.state import make_train_step

# How each method's reference forwards its views: each view on its own (its own BatchNorm
# batch) or all views of one resolution concatenated.
REFERENCE_GROUPING = {
    "amdim": "per_view",  # each view through the encoder (amdim-public's has no BatchNorm)
    "barlow_twins": "per_view",  # facebookresearch/barlowtwins: backbone(y1), backbone(y2)
    "byol": "per_view",  # deepmind-research/byol byol_experiment.py: view1, view2 apart
    "clip": "per_view",  # one image view
    "cmc": "per_view",  # one image, split into the views inside the network
    "deepclusterv2": "per_resolution",
    "cpc": "per_view",  # one view, cut into patches inside the network
    "curl": "per_view",  # MishaLaskin/curl: encoder(obs_anchor), encoder_target(obs_pos)
    "dim": "per_view",  # one view  # facebookresearch/swav main_deepclusterv2.py
    "dino": "per_resolution",  # facebookresearch/dino MultiCropWrapper
    "imix": "per_resolution",  # kibok90/imix builder.py: torch.cat([im_q, im_k]) (npair)
    "instdisc": "per_view",  # one view
    "mocov2": "per_view",  # facebookresearch/moco: encoder_q(im_q), encoder_k(im_k)
    "mocov3": "per_view",  # facebookresearch/moco-v3: base_encoder(x1), base_encoder(x2)
    "nnclr": "per_view",  # solo-learn nnclr.py: each view forwarded separately
    "simclr": "per_resolution",  # google-research/simclr: the two views concatenated
    "simsiam": "per_view",  # facebookresearch/simsiam: encoder(x1), encoder(x2)
    "supcon": "per_resolution",  # HobbitLong/SupContrast: torch.cat([images[0], images[1]])
    "swav": "per_resolution",  # facebookresearch/swav: crops of one size concatenated
    "tcn": "per_view",  # one view: a clip, its frames through the encoder together
    "vicreg": "per_view",  # facebookresearch/vicreg: backbone(x), backbone(y)
}


class NormOnly(nn.Module):
    """An 'encoder' that is one BatchNorm without affine parameters."""

    @nn.compact
    def __call__(self, x, train=True):
        x = x.reshape(x.shape[0], -1)
        return nn.BatchNorm(use_running_average=not train, use_scale=False, use_bias=False,
                            epsilon=1e-5)(x)


def standardised(x):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5)


@pytest.mark.parametrize("grouping", ["per_view", "per_resolution"])
def test_batch_statistics_are_those_of_the_declared_group(grouping):
    network = methods.Network(encoder=NormOnly())
    rng = np.random.RandomState(0)
    # Two global views with different statistics and one smaller (local) view.
    views = [rng.randn(6, 2, 2, 1) * 3 + 5, rng.randn(6, 2, 2, 1), rng.randn(6, 1, 1, 1)]
    views = [jnp.asarray(v, jnp.float32) for v in views]
    variables = network.init(jax.random.key(0), views[0])
    outputs, _ = apply_to_views(network, variables.get("params", {}), variables["batch_stats"],
                                views, grouping=grouping)
    if grouping == "per_view":
        expected = [standardised(v) for v in views]
    else:
        both = standardised(np.concatenate(views[:2]))
        expected = [both[:6], both[6:], standardised(views[2])]
    for out, want in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(out["features"], want, rtol=1e-4, atol=1e-4)


def test_every_method_declares_its_reference_grouping():
    image_methods = {name: m.view_grouping for name, m in methods.METHODS.items()
                     if "views" in m.inputs}  # the sentence methods have no image views
    assert image_methods == REFERENCE_GROUPING


# (One image view, and the networks of AMDIM, CMC, CPC, CURL, DIM and TCN are not
# base.Network, which the spy looks for.)
OWN_NETWORKS = {"amdim", "clip", "cmc", "cpc", "curl", "dim", "tcn"}


@pytest.mark.parametrize("name", sorted(set(REFERENCE_GROUPING) - OWN_NETWORKS))
def test_online_network_sees_the_declared_groups(name):
    """Traced (not compiled): the rows of every call of the online network in the loss."""
    config = tiny_config(name)
    exp = train.create_experiment(config)
    state = jax.eval_shape(train.state_init_fn(exp), jax.random.key(0))
    batch = random_batch(config, config.batch_size)
    inputs = {k: jnp.asarray(v) if k != "views" else tuple(map(jnp.asarray, v))
              for k, v in batch.items() if k in exp.method.inputs}
    rows = []

    def spy(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, methods.Network) and module.num_classes \
                and context.method_name == "__call__":
            rows.append(args[0].shape[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(spy):
        jax.eval_shape(lambda s: exp.method.loss(s.params, s.batch_stats, s.extra, inputs,
                                                 jax.random.key(0), 0), state)
    b, global_views = config.batch_size, config.augment.num_global_views
    if REFERENCE_GROUPING[name] == "per_view":
        assert rows and all(r == b for r in rows)
    else:
        assert rows[0] == global_views * b
        local = config.augment.num_local_views
        assert rows[1:] == ([local * b] if local else [])


@pytest.mark.parametrize(("name", "overrides", "message"), [
    ("mocov2", dict(queue_size=100), "queue_size=100 must be a multiple"),
    ("mocov2", dict(shuffle_bn_groups=3), "shuffle_bn_groups=3 must divide"),
    ("nnclr", dict(support_size=40), "support_size=40 must be a multiple"),
    ("swav", dict(queue_length=8), r"queue_length \(8\) must be at least"),
    ("deepclusterv2", dict(num_prototypes=(5000,)), "more than the 1295 training examples"),
])
def test_config_errors_come_before_anything_is_written(tmp_path, name, overrides, message):
    config = tiny_config(name)
    config.method.update(overrides)
    if name == "swav":
        config.method.queue_start_epoch = 0.0
    with pytest.raises(ConfigError, match=message):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_method_gets_exactly_the_batch_fields_it_declares():
    seen = {}

    class Probe(methods.Method):
        inputs = ("views", "label")

        def build_network(self, encoder, num_classes):
            return methods.Network(encoder=encoder)

        def loss(self, params, batch_stats, extra, batch, rng, step):
            seen.update(batch)
            (out,), batch_stats = self.forward(params, batch_stats, batch["views"][:1])
            return jnp.mean(out["features"] ** 2), methods.LossAux({}, batch_stats)

    config = tiny_config("simclr")
    exp = train.create_experiment(config)
    exp.method = Probe(config.method, exp.method.network.encoder)
    state = jax.eval_shape(train.state_init_fn(exp), jax.random.key(0))
    step = make_train_step(exp.method, exp.tx, exp.schedule, seed=0)
    batch = jax.tree.map(jnp.asarray, random_batch(config, config.batch_size))
    jax.eval_shape(step, state, batch)
    assert sorted(seen) == ["label", "views"]
