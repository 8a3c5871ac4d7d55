"""CLIP, SigLIP and LiT through the real loop on 8 devices, on a small part of the glyph set."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_jax import config_lib, parallel, train
from cl_jax.data import sources
from cl_jax.errors import ConfigError, UserError

FONTS = ("DejaVuSans", "DejaVuSerif")  # DejaVuSerif is the held-out face


def tiny(name="clip", **method):
    c = config_lib.load_config_file(name)
    c.data.glyph_fonts = FONTS
    c.data.glyph_size = 16
    c.augment.view1.size = 16
    c.eval.update(image_size=16, batch_size=64, max_train_examples=256)
    c.model.widths = (8, 16)
    c.method.update(embed_dim=16, **method)
    c.method.text.update(vocab_size=300, width=32, depth=1, num_heads=2, max_len=16)
    c.update(batch_size=16, total_steps=2, log_every_steps=1, checkpoint_every_steps=2)
    c.evals.linear.steps = 10
    for name in ("pictures", "finetune"):  # tests/test_pictures.py, test_finetune.py run them
        if name in c.evals:
            del c.evals[name]
    return c


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("clip")
    results = train.train_and_evaluate(tiny(), str(workdir))
    return workdir, results


def test_clip_trains_and_evaluates_through_the_loop(clip_run):
    workdir, results = clip_run
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "zeroshot_top1",
                "zeroshot_top5", "zeroshot_majority", "novel_i2t_r1", "knn_top1",
                "linear_top1"):
        assert key in results
    assert results["i2t_r1"] <= results["i2t_r5"] <= results["i2t_r10"]
    # The majority baseline is that of the held-out face's script labels.
    labels = sources.glyph_split("eval_font", size=16, fonts=FONTS).captions
    scripts = np.asarray(train.create_experiment(tiny()).eval_test_split.read(
        np.arange(len(labels)))["label"])
    scripts = scripts[scripts >= 0]
    assert results["zeroshot_majority"] == pytest.approx(
        np.bincount(scripts).max() / len(scripts))
    assert os.path.exists(workdir / "tokenizer.model")
    with open(workdir / "data.json") as f:  # the set is a function of the installed fonts
        provenance = json.load(f)
    assert provenance["fonts"] == list(FONTS) and len(provenance["fonts_hash"]) >= 16
    with open(workdir / "eval.json") as f:
        assert json.load(f)["i2t_r1"] == results["i2t_r1"]


def test_tokenizer_is_reused_on_resume(clip_run):
    workdir, _ = clip_run
    before = (workdir / "tokenizer.model").read_bytes()
    exp = train.create_experiment(tiny(), workdir=str(workdir))
    assert (workdir / "tokenizer.model").read_bytes() == before
    assert exp.tokenizer.vocab_size == 300


def batch_of(exp, seed=0):
    c = exp.config
    rng = np.random.RandomState(seed)
    size = c.augment.view1.size
    tokens = rng.randint(4, exp.tokenizer.vocab_size, (c.batch_size, c.method.text.max_len))
    tokens[:, 10:] = 0
    return {"views": (rng.randn(c.batch_size, size, size, 1).astype(np.float32),),
            "tokens": tokens.astype(np.int32), "label": np.zeros(c.batch_size, np.int32)}


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_ring_loss_equals_the_dense_loss_in_the_step(loss):
    values = {}
    for ring in (False, True):
        exp = train.create_experiment(tiny("clip", loss=loss, ring=ring))
        assert exp.mesh.size == 8
        state = train.initial_state(exp)
        batch = parallel.to_global(batch_of(exp), exp.mesh)

        @jax.jit
        def loss_and_grad(params, batch_stats, batch, exp=exp):
            def f(p):
                return exp.method.loss(p, batch_stats, {}, batch, jax.random.key(0), 0)[0]

            return jax.value_and_grad(f)(params)

        values[ring] = jax.device_get(loss_and_grad(state.params, state.batch_stats,
                                                    {"views": batch["views"],
                                                     "tokens": batch["tokens"]}))
    np.testing.assert_allclose(values[True][0], values[False][0], rtol=1e-5)
    for got, want in zip(jax.tree.leaves(values[True][1]), jax.tree.leaves(values[False][1]),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_grad_cache_in_the_clip_loss_is_the_plain_loss_for_one_chunk():
    """The wiring (both towers, the scale, BatchNorm statistics) through ``cached_embed``;
    tests/test_grad_cache.py covers several chunks and what BatchNorm makes of them."""
    results = {}
    for chunk in (0, 16):
        config = tiny("clip")
        config.grad_cache_chunk = chunk
        exp = train.create_experiment(config)
        state = train.initial_state(exp)
        batch = parallel.to_global(batch_of(exp), exp.mesh)
        inputs = {"views": batch["views"], "tokens": batch["tokens"]}

        @jax.jit
        def loss_and_grad(params, batch_stats, inputs, exp=exp):
            def f(p):
                loss, aux = exp.method.loss(p, batch_stats, {}, inputs, jax.random.key(0), 0)
                return loss, aux.batch_stats

            return jax.value_and_grad(f, has_aux=True)(params)

        results[chunk] = jax.device_get(loss_and_grad(state.params, state.batch_stats, inputs))
    for got, want in zip(jax.tree.leaves(results[16]), jax.tree.leaves(results[0]),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_clip_logit_scale_is_clamped_at_100():
    exp = train.create_experiment(tiny())
    params = {"log_scale": jnp.float32(7.0), "other": jnp.ones(2)}
    clamped = exp.method.constrain_params(params)
    assert float(clamped["log_scale"]) == pytest.approx(np.log(100.0))
    assert float(exp.method.constrain_params({"log_scale": jnp.float32(1.0)})["log_scale"]) == 1.0
    siglip = train.create_experiment(tiny("siglip"))
    assert siglip.method.constrain_params(params) is params
    state = jax.device_get(train.initial_state(siglip))
    assert float(np.exp(state.params["log_scale"])) == pytest.approx(10.0)
    assert float(state.params["bias"]) == -10.0


def test_lit_locks_the_encoder_of_an_earlier_run(clip_run, tmp_path):
    source, _ = clip_run
    config = tiny("lit")
    config.model.init_from = str(source)
    train.train_and_evaluate(config, str(tmp_path))
    exp = train.create_experiment(tiny("clip"))
    abstract = jax.eval_shape(train.state_init_fn(exp), jax.random.key(0))
    from cl_jax.checkpoint import load_modules

    want, want_stats = load_modules(str(source), ("encoder",), abstract.params,
                                    abstract.batch_stats)
    got, got_stats = load_modules(str(tmp_path), ("encoder", "text"), abstract.params,
                                  abstract.batch_stats)
    for a, b in zip(jax.tree.leaves((want["encoder"], want_stats["encoder"])),
                    jax.tree.leaves((got["encoder"], got_stats["encoder"])), strict=True):
        np.testing.assert_array_equal(a, b)  # bit-identical after training
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(want["text"]),
                                                      jax.tree.leaves(got["text"]),
                                                      strict=True)]
    assert any(moved)


def test_bad_image_text_configs_are_one_clear_error(tmp_path, clip_run):
    with pytest.raises(ConfigError, match="init_from=WORKDIR"):
        train.create_experiment(tiny("lit"))
    config = tiny("lit")
    config.model.init_from = str(tmp_path / "nothing")
    with pytest.raises(UserError, match="has no checkpoint"):
        train.initial_state(train.create_experiment(config))
    config.model.init_from = str(clip_run[0])
    config.model.widths = (8, 32)
    with pytest.raises(UserError, match="do not fit"):
        train.initial_state(train.create_experiment(config))
    digits = tiny()
    digits.data.update(source="digits", train_split="train", eval_train_split="train",
                       eval_test_split="test", extra_eval_splits=())
    del digits.evals.retrieval_novel
    with pytest.raises(ConfigError, match="no captions"):
        train.create_experiment(digits)


@pytest.fixture(scope="module")
def memorised_run(tmp_path_factory):
    """CLIP trained on 14 glyphs of one face (capital letters A-P less the 2 held out) long
    enough to tell their names apart."""
    workdir = tmp_path_factory.mktemp("memorised")
    c = tiny()
    c.data.glyph_code_points = tuple(range(0x41, 0x51))
    # As many pieces as sentencepiece makes of these names: nearly letters, so the names
    # need room (cut at 16 tokens they would all read "latin capital letter").
    c.method.text.update(vocab_size=23, max_len=32)
    c.augment.view1.update(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    c.optim.base_lr = 3e-3
    c.update(batch_size=8, total_steps=400, log_every_steps=100, checkpoint_every_steps=400)
    for name in ("knn", "linear", "zeroshot", "retrieval_novel"):
        del c.evals[name]
    c.data.extra_eval_splits = ()
    train.train_and_evaluate(c, str(workdir))
    split = sources.glyph_split("train", size=16, fonts=FONTS, code_points=c.data.glyph_code_points)
    return workdir, split


def test_search_finds_a_glyph_by_its_own_caption(memorised_run, tmp_path):
    """Semantic search over an image folder: each trained glyph is the top hit of its own
    name; an image query finds itself first; the index is built once."""
    import matplotlib.pyplot as plt

    from cl_jax import search

    workdir, split = memorised_run
    images = np.asarray(split.read(np.arange(split.num_examples))["image"])
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        plt.imsave(folder / f"{i:03d}.png", image[..., 0], cmap="gray", vmin=0, vmax=255)
    hits, sheet = search.run(str(workdir), str(folder), query_image=str(folder / "007.png"),
                             top_k=3)
    assert hits[0][0].endswith("007.png") and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    assert os.path.getsize(sheet) > 1000
    cached = list((workdir / "search").glob("index-*.npz"))
    assert len(cached) == 1
    from cl_jax.evaluate import load_run

    exp, state = load_run(str(workdir))
    paths, embeddings = search.image_index(exp, state, str(workdir), str(folder))
    assert list((workdir / "search").glob("index-*.npz")) == cached  # the index is reused
    found = [paths[search.search(embeddings, search.query_embedding(exp, state, caption),
                                 top_k=1)[0][0]] for caption in split.captions]
    assert [os.path.basename(p) for p in found] == [f"{i:03d}.png" for i in range(len(found))]
    with pytest.raises(UserError, match="exactly one"):
        search.run(str(workdir), str(folder))


def user_data_config(tmp_path, source, **data):
    c = tiny()
    c.data.update(source=source, channels=3, mean=(0.5,) * 3, std=(0.25,) * 3,
                  extra_eval_splits=(), **data)
    c.augment.view1.size = 16
    c.method.text.vocab_size = 24
    for name in ("knn", "linear", "zeroshot", "retrieval_novel"):
        del c.evals[name]
    c.batch_size = 8
    return c


def test_clip_trains_on_coco_captions_several_per_image(tmp_path):
    """A tiny coco_captions (test_captions' builder): random access, 4-5 captions per image,
    one drawn per step; retrieval counts an image's hit on any of its captions."""
    import tensorflow_datasets as tfds
    import test_captions  # noqa: F401  (registers the builder)

    tfds.builder("cl_jax_tiny_coco", data_dir=str(tmp_path / "tfds")).download_and_prepare()
    c = user_data_config(tmp_path, "coco", name="cl_jax_tiny_coco",
                         data_dir=str(tmp_path / "tfds"), train_split="train",
                         eval_test_split="test")
    results = train.train_and_evaluate(c, str(tmp_path / "run"))
    # 3 test images with 4, 5 and 4 captions: any image has one of its own among its top 10
    # of the 13 captions, and every caption's image is among the top 5 of 3 images.
    assert results["i2t_r10"] == 1.0 and results["t2i_r5"] == 1.0
    exp = train.create_experiment(c, workdir=str(tmp_path / "run"))
    context = train.EvalContext(exp, train.initial_state(exp))
    pairs = context.image_text("test")
    counts = [len(c) for c in exp.eval_test_split.captions]
    assert sorted(counts) == [4, 4, 5]
    np.testing.assert_array_equal(pairs["text_to_image"], np.repeat(np.arange(3), counts))


def test_clip_trains_on_webdataset_shards(tmp_path):
    """Streamed tar shards, captions tokenised in tf.data by tensorflow-text."""
    pytest.importorskip("tensorflow_text")
    import test_captions

    test_captions.write_shards(tmp_path / "shards", [8, 8], incomplete=False)
    c = user_data_config(tmp_path, "webdataset", shards=str(tmp_path / "shards/{000..001}.tar"))
    c.method.text.vocab_size = 28
    del c.evals.retrieval  # no evaluation split in memory
    train.train_and_evaluate(c, str(tmp_path / "run"))
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f if '"loss"' in line] == [1, 2]


def test_an_evaluator_asking_for_a_split_the_run_lacks_fails_at_once(tmp_path):
    c = tiny()
    c.data.extra_eval_splits = ()  # retrieval_novel asks for eval_novel
    with pytest.raises(ConfigError, match="evals.retrieval_novel.split is 'eval_novel'"):
        train.train_and_evaluate(c, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
