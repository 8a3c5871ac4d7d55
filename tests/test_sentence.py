"""Sentence-embedding methods through the real loop on 8 devices, the text pipeline, and
the sharded step against one device."""

import functools
import json
import os

import jax
import numpy as np
import pytest

from cl_jax import config_lib, data, embed, evaluate, parallel, train
from cl_jax.data import text as text_data
from cl_jax.errors import ConfigError, UserError
from cl_jax.state import loss_and_grads


def tiny(name="simcse", preset="", evals=True, **method):
    """A config file's preset, shrunk; ``evals=False`` for a test of the train split and the
    step alone: no evaluation split is built (WordNet's take half a second an experiment)."""
    c = config_lib.load_config_file(f"{name}:{preset}" if preset else name)
    c.data.update(text_limit=400, text_eval_limit=300, text_sts_pairs=120,
                  tokenizer_captions=2000)
    c.model.text.update(vocab_size=400, width=32, depth=1, num_heads=2, max_len=16)
    c.method.update(**method)
    c.update(batch_size=16, total_steps=2, log_every_steps=1, checkpoint_every_steps=2)
    c.eval.batch_size = 64
    c.evals.linear.steps = 10
    c.evals.sts.flow = False  # the flow has its own tests; one fit costs seconds
    for name in ("pictures", "finetune"):  # tests/test_pictures.py, test_finetune.py run them
        if name in c.evals:
            del c.evals[name]
    if not evals:
        c.data.update(eval_train_split="", eval_test_split="", extra_eval_splits=())
        c.evals = {}
    return c


def fast_key(seed):
    """A dropout key for the tests that check a loss is finite: the rbg generator compiles
    far faster than threefry on CPU (as in test_text_model); the sharded tests keep threefry."""
    return jax.random.key(seed, impl="rbg")


@pytest.fixture(scope="module")
def simcse_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("simcse")
    return workdir, train.train_and_evaluate(tiny(), str(workdir))


def test_simcse_trains_and_evaluates_through_the_loop(simcse_run):
    workdir, results = simcse_run
    for key in ("sts_spearman", "sts_spearman_whitened", "knn_top1", "linear_top1",
                "text_r@1", "text_r@10"):
        assert key in results and np.isfinite(results[key])
    assert -1 <= results["sts_spearman"] <= 1
    assert results["text_r@1"] <= results["text_r@10"]
    assert os.path.exists(workdir / "tokenizer.model")
    with open(workdir / "eval.json") as f:
        assert json.load(f)["sts_spearman"] == results["sts_spearman"]
    with open(workdir / "data.json") as f:
        assert json.load(f)["split"] == "glosses"
    assert "probe" in tiny().evals  # the probe is configured, but no eval.probe_file given:
    assert not [key for key in results if key.startswith("probe")]  # nothing scored


def test_embed_writes_a_text_splits_features_labels_and_sentences(simcse_run, tmp_path):
    workdir, _ = simcse_run
    embed.run(str(workdir), str(tmp_path / "glosses.npy"))
    exp, state = evaluate.load_run(str(workdir))
    split = exp.eval_test_split
    features = np.load(tmp_path / "glosses.npy")
    assert features.shape == (split.num_examples, 32) and np.isfinite(features).all()
    assert (tmp_path / "glosses.texts.txt").read_text().splitlines() == list(split.texts[0])
    np.testing.assert_array_equal(np.load(tmp_path / "glosses.labels.npy"),
                                  split.read(np.arange(split.num_examples))["label"])
    with pytest.raises(UserError, match=r"\(simcse\) encodes sentences; --images"):
        embed.run(str(workdir), str(tmp_path / "x.npy"), images=str(tmp_path))


def text_batch(config):
    exp = train.create_experiment(config)
    ds = data.train_dataset(exp.train_split, (), seed=0, global_batch=config.batch_size,
                            mean=(0.0,), std=(1.0,), text_augment=train.caption_augment(exp))
    return exp, next(ds.as_numpy_iterator())


def step_outputs(exp, host_batch):
    """(metrics, gradients) of the jitted loss on ``host_batch``, on ``exp``'s mesh."""
    state = train.initial_state(exp)
    batch = parallel.to_global(host_batch, exp.mesh)
    step = jax.jit(functools.partial(loss_and_grads, exp.method))
    metrics, _, grads = step(state, batch, jax.random.key(3))
    return jax.device_get((metrics, grads))


def assert_same_outputs(want, got):
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6 * np.abs(a).max())


def test_supervised_simcse_with_cutoff_on_eight_devices_matches_one():
    config = tiny(preset="sup", evals=False, cutoff="token", cutoff_ratio=0.2,
                  hard_negative_weight=1.0)
    config.augment.update(word_dropout=0.1, word_shuffle_window=1)
    eight, host_batch = text_batch(config)  # the experiment on all 8 devices
    assert eight.mesh.size == 8 and host_batch["sentences"].shape == (16, 3, 16)
    one = train.create_experiment(config, parallel.create_mesh(jax.devices()[:1]))
    assert_same_outputs(step_outputs(one, host_batch), step_outputs(eight, host_batch))


def test_text_batches_are_the_same_rows_whatever_the_process_count():
    config = tiny(evals=False)
    config.augment.word_dropout = 0.3
    exp = train.create_experiment(config)
    kwargs = dict(seed=4, global_batch=16, mean=(0.0,), std=(1.0,),
                  text_augment=train.caption_augment(exp))
    one = next(data.train_dataset(exp.train_split, (), **kwargs).as_numpy_iterator())
    halves = [next(data.train_dataset(exp.train_split, (), process_index=p, process_count=2,
                                      **kwargs).as_numpy_iterator()) for p in range(2)]
    for key in ("sentences", "index", "label", "score"):
        np.testing.assert_array_equal(one[key], np.concatenate([h[key] for h in halves]))


def test_each_sentence_of_an_example_draws_its_own_augmentation():
    split = text_data.text_split("same", [["a b c d e f g h"] * 8] * 3)

    class Words:  # one id per word, bos 2, eos 3, pad 0
        pad_id, bos_id, eos_id, vocab_size = 0, 2, 3, 20

        def encode(self, texts, max_len, add_bos=False, add_eos=True):
            room = max_len - add_bos - add_eos  # a long text loses its last words
            rows = [[2] * add_bos + [10 + "abcdefgh".index(w) for w in t.split()][:room] + [3]
                    for t in texts]
            return np.array([r + [0] * (max_len - len(r)) for r in rows], np.int32)

        def piece(self, i):
            return "▁x" if i >= 10 else "<s>"

    split, truncated = text_data.with_sentence_tokens(split, Words(), 12)
    assert truncated == 0
    exact = text_data.text_split("fit", [["a b c d e f g h", "a b c d e f g h a", "a"]])
    exact, truncated = text_data.with_sentence_tokens(exact, Words(), 10)  # bos 8 eos: fits
    assert truncated == 1
    rows = np.asarray(exact.read(np.arange(3))["sentences"])[:, 0]
    assert list(rows[1]) == [2, 10, 11, 12, 13, 14, 15, 16, 17, 3]  # cut, the eos kept
    from cl_jax.data import text_augment

    starts = text_augment.word_start_table(Words())
    augment = lambda tokens, seed: text_augment.word_dropout(tokens, seed, 0.5, starts, (2, 3))
    batch = next(data.train_dataset(split, (), seed=0, global_batch=8, mean=(0.0,), std=(1.0,),
                                    text_augment=augment).as_numpy_iterator())
    sentences = batch["sentences"]  # (8, 3, 12): three copies of one sentence per example
    assert any(not np.array_equal(row[0], row[1]) for row in sentences)
    assert np.all(sentences[:, :, 0] == 2)  # bos kept


def test_user_files_train_and_evaluate(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"sentence number {i} is about topic {i % 7}.\n\n"
                             for i in range(64)))
    sts_file = tmp_path / "sts.tsv"
    sts_file.write_text("sentence1\tsentence2\tscore\n" + "".join(
        f"topic {i} here\ttopic {i % 3} there\t{i % 5}\n" for i in range(20)))
    c = tiny(preset="lines")
    c.data.train_file = str(lines)
    c.model.text.vocab_size = 30
    c.eval.sts_file = str(sts_file)
    exp = train.create_experiment(c)
    assert exp.train_split.num_examples == 64
    assert any("skipped 64 empty lines" in note for note in exp.notes)
    assert exp.eval_train_split.name == "wordnet/categories_train"  # the probes stay on WordNet
    sts = exp.extra_eval_splits["sts"]
    assert sts.num_examples == 20 and list(sts.scores[:3]) == [0.0, 1.0, 2.0]
    c.data.train_file = ""
    with pytest.raises(ConfigError, match="train_file"):
        train.create_experiment(c)


def test_a_method_given_the_wrong_number_of_sentences_is_one_clear_error():
    c = tiny("sbert", evals=False, objective="triplet")
    c.data.train_split = "glosses"  # one sentence per example; triplet needs three
    with pytest.raises(ConfigError, match="3 sentence"):
        train.create_experiment(c)
    c = tiny(objective="x")
    c.model.encoder = "convnet"
    with pytest.raises(ConfigError, match="model.encoder=text"):
        train.create_experiment(c)


@pytest.mark.parametrize("objective,split", [("softmax", "nli"), ("cosine", "similarity_train"),
                                             ("cosent", "similarity_train"),
                                             ("triplet", "gloss_example"),
                                             ("mnrl", "gloss_example")])
def test_sbert_objectives_give_a_finite_loss_and_gradient(objective, split, tmp_path):
    c = tiny("sbert", evals=False, objective=objective)
    c.data.update(train_split=split, text_limit=200)
    if split == "nli":
        nli = tmp_path / "nli.tsv"
        labels = ("entailment", "neutral", "contradiction")
        nli.write_text("sentence1\tsentence2\tlabel\n" + "".join(
            f"premise {i}\thypothesis {i}\t{labels[i % 3]}\n" for i in range(40)))
        c.data.update(source="nli", train_file=str(nli), nli_form="pairs")
        c.model.text.vocab_size = 30
    exp, host_batch = text_batch(c)
    state = train.initial_state(exp)
    batch = parallel.to_global(host_batch, exp.mesh)
    metrics, _, grads = jax.jit(functools.partial(loss_and_grads, exp.method))(
        state, batch, fast_key(0))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
    norms = [float(np.abs(g).sum()) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and sum(norms) > 0
    if objective == "softmax":
        assert 0 <= float(metrics["accuracy"]) <= 1


def test_quick_thoughts_trains_on_runs_of_consecutive_sentences():
    c = tiny("quick_thoughts", evals=False)
    c.data.text_chunk = 4
    exp, host_batch = text_batch(c)
    assert host_batch["sentences"].shape == (16, 4, 16)
    texts, documents = text_data.pydoc_sentences()
    columns = exp.train_split.texts
    for i in (0, 7, len(columns[0]) - 1):  # each example: 4 consecutive sentences, one topic
        start = texts.index(columns[0][i])
        assert [c[i] for c in columns] == list(texts[start:start + 4])
        assert len(set(documents[start:start + 4])) == 1
    assert text_data.consecutive_chunks("abcde", [0, 0, 0, 1, 1], 2) == [["a", "b", "d"],
                                                                         ["b", "c", "e"]]
    state = train.initial_state(exp)
    metrics, _, _ = jax.jit(functools.partial(loss_and_grads, exp.method))(
        state, parallel.to_global(host_batch, exp.mesh), fast_key(0))
    assert np.isfinite(float(metrics["loss"]))
    features = train.embed_texts(exp, state, ["a sentence", "another one"], "text_features")
    assert features.shape == (2, 2 * c.model.text.width)  # [f(s); g(s)]
    c.data.text_chunk = 0
    with pytest.raises(ConfigError, match="text_chunk"):
        train.create_experiment(c)
    # The default's tokenizer fits the manual's text (the tower itself is the tiny one's).
    default = config_lib.load_config_file("quick_thoughts")
    assert train.create_experiment(default).tokenizer.vocab_size == 2000


def test_grad_cache_gives_the_full_batch_loss_and_gradient():
    """The unsupervised step embeds twice, the second pass with a cutoff mask, both through
    GradCache; the supervised step's one embedding of its three sentences takes the same
    path (``SentenceMethod.embed``), so it is not compiled twice more here."""
    config = tiny(evals=False)
    config.model.text.dropout_rate = 0.0  # the chunks' dropout masks differ from one pass's
    exp, host_batch = text_batch(config)
    full = step_outputs(exp, host_batch)
    config.grad_cache_chunk = 8
    cached = train.create_experiment(config)
    assert cached.method.grad_cache_chunk == 8
    assert_same_outputs(full, step_outputs(cached, host_batch))
    config.grad_cache_chunk = 5
    with pytest.raises(ConfigError, match="divide the batch"):
        train.create_experiment(config)
    config = tiny("quick_thoughts")
    config.update(grad_cache_chunk=8)
    with pytest.raises(ConfigError, match="GradCache"):
        train.create_experiment(config)


def test_simcse_starts_from_a_local_hugging_face_bert(tmp_path):
    pytest.importorskip("safetensors")
    pytest.importorskip("tokenizers")
    from test_hf import model_config, numpy_encoder, write_model

    from cl_jax.models import bert

    # One layer: test_hf checks the layers' weight names; here the tower's place in the run.
    directory = write_model(tmp_path / "bert", config=model_config(num_hidden_layers=1))
    c = tiny(evals=False)
    c.model.text.update(init_from_hf=str(directory), max_len=8)
    c.augment.word_dropout = 0.2  # WordPiece word starts
    exp, host_batch = text_batch(c)
    assert isinstance(exp.method.network.encoder, bert.BertEncoder)
    assert any("bert" in note for note in exp.notes)
    state = train.initial_state(exp)
    # The loaded weights are the initial state: the encoder's features are the checkpoint's.
    tokens = exp.encode(["a dog", "the cat sat"])
    with open(directory / "config.json") as f:
        config = json.load(f)
    from safetensors.numpy import load_file

    hidden, _ = numpy_encoder(load_file(str(directory / "model.safetensors")), tokens, config)
    features = train.embed_texts(exp, state, ["a dog", "the cat sat"], "text_features")
    np.testing.assert_allclose(features, hidden[:, 0], atol=2e-5)  # [CLS], pooler off in eval
    metrics, _, _ = jax.jit(functools.partial(loss_and_grads, exp.method))(
        state, parallel.to_global(host_batch, exp.mesh), fast_key(0))
    assert np.isfinite(float(metrics["loss"]))


def test_cert_trains_moco_on_sentence_paraphrase_pairs(tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("sentence\tparaphrase\n" + "".join(
        f"the {i} cat sat\ta cat number {i} was sitting\n" for i in range(30)) + "only one\t\n")
    c = tiny("cert", "pairs", evals=False, queue_size=32)
    c.data.train_file = str(pairs)
    c.model.text.update(vocab_size=30, dropout_rate=0.0)  # keys: a function of the params
    exp, host_batch = text_batch(c)
    assert exp.train_split.num_examples == 30 and any("1 row" in n for n in exp.notes)
    state = train.initial_state(exp)
    target = jax.device_get(state.extra["target_params"])
    keys = jax.jit(functools.partial(exp.method.target_network.apply, train=True))(
        {"params": target}, host_batch["sentences"][:, 1])  # with the head, as the loss
    keys = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    new, metrics = train.jit_train_step(exp)(state, parallel.to_global(host_batch, exp.mesh))
    assert np.isfinite(float(metrics["loss"]))
    extra, params = jax.device_get((new.extra, new.params))
    assert int(extra["queue_ptr"]) == 16  # this batch's keys went into the queue, in order
    np.testing.assert_allclose(extra["queue"][:16], keys, rtol=1e-4, atol=1e-5)
    for old, online, ema in zip(jax.tree.leaves(target), jax.tree.leaves(
            {k: params[k] for k in target}), jax.tree.leaves(extra["target_params"]),
            strict=True):  # target <- 0.999 target + 0.001 online
        np.testing.assert_allclose(ema, 0.999 * old + 0.001 * online, rtol=1e-5, atol=1e-6)
    c.method.queue_size = 20
    with pytest.raises(ConfigError, match="queue_size"):
        train.create_experiment(c)


def test_a_labelled_sentence_file_is_probed_by_cross_validation(tmp_path):
    probe = tmp_path / "probe.tsv"
    words = ("good great fine", "bad awful poor")
    probe.write_text("sentence\tlabel\n" + "".join(
        f"{words[i % 2].split()[i % 3]} thing {i}\t{('pos', 'neg')[i % 2]}\n"
        for i in range(43)))
    c = tiny(evals=False)  # without a file, nothing scored: test_simcse_trains_and_evaluates
    c.data.extra_eval_splits = ("probe",)
    c.eval.probe_file = str(probe)
    c.evals = {"probe": dict(type="sentence_probe", every_steps=0, split="probe", folds=4,
                             epochs=-1.0, steps=50, batch_size=64, lr=0.1, weight_decay=0.0)}
    exp = train.create_experiment(c)
    split = exp.extra_eval_splits["probe"]
    assert split.num_examples == 43 and split.num_classes == 2
    results = train.evaluate(exp, train.initial_state(exp), final=True)
    assert set(results) == {"probe_acc", "probe_acc_std"} and 0 <= results["probe_acc"] <= 1


def test_cross_validated_accuracy_trains_on_the_other_folds():
    from cl_jax.evaluation import sts

    rng = np.random.RandomState(0)
    labels = np.arange(41) % 2
    features = np.stack([labels * 4.0 - 2.0, rng.normal(size=41)], axis=1)  # separable
    mean, std = sts.cross_validated_accuracy(features, labels, 2, folds=4, steps=100,
                                             batch_size=64, lr=0.1, weight_decay=0.0)
    assert mean == 1.0 and std == 0.0
    noise = rng.normal(size=(41, 2))  # no signal: about chance
    mean, _ = sts.cross_validated_accuracy(noise, labels, 2, folds=4, steps=100, batch_size=64,
                                           lr=0.1, weight_decay=0.0)
    assert mean < 0.8
