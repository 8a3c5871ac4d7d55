"""Pretrained BERT / RoBERTa from a local Hugging Face directory: a float64 NumPy forward pass
on hand-written weights, RoBERTa's position ids, padding, the WordPiece / byte-level BPE
tokenizers by hand, every missing-file and mismatch error; and, where PyTorch and
transformers are installed, the same outputs and token ids as transformers."""

import importlib.util
import json
import math
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from scipy.special import erf

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")

from safetensors.numpy import save_file  # noqa: E402

from cl_jax.data.hf_tokenizer import HFTokenizer  # noqa: E402
from cl_jax.errors import ConfigError, DataError  # noqa: E402
from cl_jax.models.bert import position_ids  # noqa: E402
from cl_jax.models.hf import load_hf_encoder  # noqa: E402

BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat",
              "a", "dog", "##s", "run", "##ning", ".", ",", "!", "hello", "world", "is", "big",
              "small", "red", "##dy"]
# Byte-level BPE: GPT-2's byte alphabet maps the space to "Ġ"; the other characters here
# are themselves.
LETTERS = list("abcdehilmnorst.,!'") + ["Ġ"]
MERGES = [("h", "e"), ("Ġ", "c"), ("Ġc", "a"), ("Ġca", "t"), ("Ġ", "s"), ("a", "t"), ("t", "he"),
          ("Ġ", "the"), ("Ġs", "at")]
ROBERTA_VOCAB = ["<s>", "<pad>", "</s>", "<unk>", *LETTERS, *("".join(m) for m in MERGES),
                 "<mask>"]
TEXTS = ["the cat sat on the mat.", "a dog!", "Hello World, the red dog is BIG"]
ROBERTA_TEXTS = ["the cat sat.", "a cat", "the bat is that cat, isn't it!"]


def model_config(model_type="bert", **overrides):
    """A tiny config.json; RoBERTa's with the tanh GELU, BERT's with the exact one."""
    if model_type == "roberta":
        own = {"max_position_embeddings": 18, "type_vocab_size": 1, "hidden_act": "gelu_new",
               "layer_norm_eps": 1e-5, "pad_token_id": 1}
    else:
        own = {"max_position_embeddings": 16, "type_vocab_size": 2, "hidden_act": "gelu",
               "layer_norm_eps": 1e-12, "pad_token_id": 0}
    return {"model_type": model_type, "vocab_size": 40, "hidden_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32, **own,
            **overrides}


def random_weights(config, seed=0, pooler=True):
    """transformers-named weights (``nn.Linear``: (out, in)); LayerNorm scales around 1."""
    h, m = config["hidden_size"], config["intermediate_size"]
    shapes = {"embeddings.word_embeddings.weight": (config["vocab_size"], h),
              "embeddings.position_embeddings.weight": (config["max_position_embeddings"], h),
              "embeddings.token_type_embeddings.weight": (config["type_vocab_size"], h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name, shape in [("attention.self.query", (h, h)), ("attention.self.key", (h, h)),
                            ("attention.self.value", (h, h)), ("attention.output.dense", (h, h)),
                            ("intermediate.dense", (m, h)), ("output.dense", (h, m)),
                            ("attention.output.LayerNorm", (h,)), ("output.LayerNorm", (h,))]:
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = shape, shape[:1]
    if pooler:
        shapes["pooler.dense.weight"], shapes["pooler.dense.bias"] = (h, h), (h,)
    rng = np.random.RandomState(seed)
    return {name: (rng.normal(0, 0.3, shape) + ("LayerNorm.weight" in name)).astype(np.float32)
            for name, shape in shapes.items()}


def write_tokenizer(path, model_type):
    if model_type == "bert":
        (path / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    else:
        (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(ROBERTA_VOCAB)}))
        (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m)
                                                                       for m in MERGES) + "\n")


def write_model(path, model_type="bert", *, config=None, weights=None, tokenizer=True):
    """A Hugging Face directory written by hand: config.json, model.safetensors, tokenizer."""
    path.mkdir(parents=True, exist_ok=True)
    config = config or model_config(model_type)
    (path / "config.json").write_text(json.dumps(config))
    save_file(random_weights(config) if weights is None else weights,
              str(path / "model.safetensors"))
    if tokenizer:
        write_tokenizer(path, model_type)
    return path


# --- a float64 NumPy BERT / RoBERTa, from the transformers-named weights -------------------


def _layer_norm(x, w, name, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]


def numpy_encoder(weights, tokens, config, keep=1.0):
    """(last hidden states (B, L, H), pooler output (B, H)) in float64; ``keep`` multiplies
    the embedding layer's output."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    eps, pad = config["layer_norm_eps"], config["pad_token_id"]
    heads = config["num_attention_heads"]
    b, length = tokens.shape
    valid = tokens != pad
    if config["model_type"] == "roberta":
        pos = np.array([[pad + 1 + valid[r, :c].sum() if valid[r, c] else pad
                         for c in range(length)] for r in range(b)])
    else:
        pos = np.tile(np.arange(length), (b, 1))
    x = (w["embeddings.word_embeddings.weight"][tokens]
         + w["embeddings.position_embeddings.weight"][pos]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = _layer_norm(x, w, "embeddings.LayerNorm", eps) * keep
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def linear(h, name, p=p):
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (linear(x, f"attention.self.{n}").reshape(b, length, heads, -1)
                   for n in ("query", "key", "value"))
        scores = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        scores = np.where(valid[:, None, None, :], scores, -np.inf)
        attn = np.exp(scores - scores.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        y = np.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, length, -1)
        x = _layer_norm(x + linear(y, "attention.output.dense"), w,
                        p + "attention.output.LayerNorm", eps)
        y = linear(x, "intermediate.dense")
        if config["hidden_act"] == "gelu":
            y = 0.5 * y * (1 + erf(y / math.sqrt(2)))
        else:  # gelu_new: Hendrycks & Gimpel's tanh approximation
            y = 0.5 * y * (1 + np.tanh(math.sqrt(2 / math.pi) * (y + 0.044715 * y ** 3)))
        x = _layer_norm(x + linear(y, "output.dense"), w, p + "output.LayerNorm", eps)
    pooled = np.tanh(x[:, 0] @ w["pooler.dense.weight"].T + w["pooler.dense.bias"])
    return x, pooled


def apply(module, params, tokens, **kwargs):
    return module.apply({"params": params}, jnp.asarray(tokens), return_tokens=True, **kwargs)


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_forward_matches_numpy(tmp_path, model_type):
    """Hand-written weights give the float64 NumPy forward's hidden states and pooler output;
    padding does not change the features of the other tokens."""
    write_model(tmp_path, model_type)
    module, params, tokenizer, info = load_hf_encoder(tmp_path, pooling="pooler")
    texts = TEXTS if model_type == "bert" else ROBERTA_TEXTS
    tokens = tokenizer.encode(texts, 12, add_bos=True)
    assert (tokens == tokenizer.pad_id).any() and info["has_pooler"]
    pooled, features, valid = apply(module, params, tokens)
    want, want_pooled = numpy_encoder(random_weights(model_config(model_type)), tokens,
                                      model_config(model_type))
    np.testing.assert_allclose(features, want, atol=2e-5)
    np.testing.assert_allclose(pooled, want_pooled, atol=2e-5)
    np.testing.assert_array_equal(valid, tokens != tokenizer.pad_id)
    assert info["max_len"] == 16 and info["pad_id"] == (1 if model_type == "roberta" else 0)
    assert module.width == 16

    keep = np.ones(features.shape, np.float32)
    keep[0, 2], keep[1, :, 3] = 0, 0  # a token cut from row 0, a feature from row 1
    _, cut, _ = apply(module, params, tokens, keep=jnp.asarray(keep))
    np.testing.assert_allclose(cut, numpy_encoder(random_weights(model_config(model_type)),
                                                  tokens, model_config(model_type), keep)[0],
                               atol=2e-5)
    assert np.abs(cut - features).max() > 1e-2

    longer = tokenizer.encode(texts, 16, add_bos=True)
    pooled_16, features_16, _ = apply(module, params, longer)
    fit = tokens[:, -1] == tokenizer.pad_id  # the rows not truncated to 12 tokens
    assert fit.sum() >= 2
    np.testing.assert_array_equal(longer[fit, :12], tokens[fit])
    np.testing.assert_allclose(pooled_16[fit], pooled[fit], atol=1e-6)
    mask = valid[fit][..., None]
    np.testing.assert_allclose(np.where(mask, features_16[fit, :12], 0),
                               np.where(mask, features[fit], 0), atol=1e-6)


def test_poolings_and_dropout(tmp_path):
    write_model(tmp_path, "bert", weights=random_weights(model_config(), pooler=False))
    module, params, tokenizer, info = load_hf_encoder(tmp_path, pooling="mean")
    assert not info["has_pooler"] and "pooler" not in params
    tokens = tokenizer.encode(TEXTS, 10, add_bos=True)
    pooled, features, valid = apply(module, params, tokens)
    mean = (features * valid[..., None]).sum(1) / valid.sum(1, keepdims=True)
    np.testing.assert_allclose(pooled, mean, atol=1e-6)
    cls = module.clone(pooling="cls").apply({"params": params}, jnp.asarray(tokens))
    np.testing.assert_array_equal(cls, features[:, 0])
    with pytest.raises(DataError, match="no pooler: use pooling 'cls' or 'mean'"):
        load_hf_encoder(tmp_path, pooling="pooler")

    # The rbg generator compiles far faster than threefry on CPU; dropout works the same.
    dropped = [module.apply({"params": params}, jnp.asarray(tokens), train=True,
                            rngs={"dropout": jax.random.key(s, impl="rbg")}) for s in (0, 0, 1)]
    np.testing.assert_array_equal(dropped[0], dropped[1])
    assert np.abs(dropped[0] - dropped[2]).max() > 1e-3
    assert np.abs(dropped[0] - pooled).max() > 1e-3
    module, _, _, _ = load_hf_encoder(tmp_path, dropout=0.3)
    assert module.hidden_dropout == module.attention_dropout == 0.3


def test_roberta_position_ids():
    """fairseq's make_positions: non-pad tokens count from pad + 1, padding keeps pad."""
    tokens = jnp.array([[0, 9, 8, 2, 1, 1], [0, 2, 1, 1, 1, 1], [0, 7, 1, 6, 2, 1]])
    np.testing.assert_array_equal(position_ids(tokens, 1, True),
                                  [[2, 3, 4, 5, 1, 1], [2, 3, 1, 1, 1, 1], [2, 3, 1, 4, 5, 1]])
    np.testing.assert_array_equal(position_ids(tokens, 1, False), np.tile(np.arange(6), (3, 1)))


def test_wordpiece_tokenizer_by_hand(tmp_path):
    write_tokenizer(tmp_path, "bert")
    tok = HFTokenizer.from_directory(tmp_path, "bert")
    assert (tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (25, 0, 2, 3, 1)
    ids = tok.encode(["The cats running.", "Reddy dog xyz [MASK]"], 9, add_bos=True)
    np.testing.assert_array_equal(ids, [[2, 5, 6, 12, 13, 14, 15, 3, 0],
                                        [2, 23, 24, 11, 1, 4, 3, 0, 0]])
    np.testing.assert_array_equal(tok.encode("the cat sat on the mat", 5, add_bos=True),
                                  [[2, 5, 6, 7, 3]])  # truncated: [SEP] stays
    np.testing.assert_array_equal(tok.encode(b"dog", 3), [[11, 3, 0]])
    assert tok.decode(ids[0]) == "the cats running."
    assert tok.piece(12) == "##s"


def test_byte_level_bpe_tokenizer_by_hand(tmp_path):
    write_tokenizer(tmp_path, "roberta")
    tok = HFTokenizer.from_directory(tmp_path, "roberta")
    v = {t: i for i, t in enumerate(ROBERTA_VOCAB)}
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.vocab_size) == (1, 0, 2, len(ROBERTA_VOCAB))
    # "the" -> t he -> the; " cat" -> Ġc a t -> Ġca t -> Ġcat; " sat" -> Ġs at -> Ġsat
    want = [0, v["the"], v["Ġcat"], v["Ġsat"], v["."], 2, 1]
    np.testing.assert_array_equal(tok.encode("the cat sat.", 7, add_bos=True), [want])
    assert tok.decode(want) == "the cat sat."


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"no such directory.*must contain config\.json"):
        load_hf_encoder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no config\.json.*model\.safetensors"):
        load_hf_encoder(tmp_path / "empty")

    no_weights = write_model(tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(DataError, match=r"no_weights has no model weights: neither "
                                         r"model\.safetensors nor pytorch_model\.bin"):
        load_hf_encoder(no_weights)

    no_vocab = write_model(tmp_path / "no_vocab", tokenizer=False)
    with pytest.raises(DataError, match=r"no_vocab has no tokenizer: neither tokenizer\.json "
                                        r"nor vocab\.txt"):
        load_hf_encoder(no_vocab)
    no_merges = write_model(tmp_path / "no_merges", "roberta")
    (no_merges / "merges.txt").unlink()
    with pytest.raises(DataError, match=r"neither tokenizer\.json nor merges\.txt. It must "
                                        r"contain tokenizer\.json, or vocab\.json and merges"):
        load_hf_encoder(no_merges)


def test_pytorch_checkpoint_without_torch(tmp_path):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed: test_matches_transformers reads pytorch_model.bin")
    path = write_model(tmp_path)
    (path / "model.safetensors").rename(path / "pytorch_model.bin")
    with pytest.raises(DataError, match="PyTorch is not installed.*model.safetensors"):
        load_hf_encoder(path)


def test_config_and_weight_mismatches(tmp_path):
    with pytest.raises(ConfigError, match="model_type 'gpt2' is not supported"):
        load_hf_encoder(write_model(tmp_path / "gpt2", config=model_config(model_type="gpt2"),
                                    weights={"x": np.zeros(1, np.float32)}))
    small = write_model(tmp_path / "small", config=model_config(vocab_size=20),
                        weights={"x": np.zeros(1, np.float32)})
    with pytest.raises(DataError, match="has 25 tokens, more than the 20 rows"):
        load_hf_encoder(small)

    weights = random_weights(model_config())
    weights["encoder.layer.1.intermediate.dense.weight"] = np.zeros((30, 16), np.float32)
    with pytest.raises(DataError, match=r"encoder\.layer\.1\.intermediate\.dense\.weight has "
                                        r"shape \(30, 16\).*layer_1/intermediate/kernel"):
        load_hf_encoder(write_model(tmp_path / "shape", weights=weights))
    fewer_layers = write_model(tmp_path / "layers", config=model_config(num_hidden_layers=1),
                               weights=random_weights(model_config()))
    with pytest.raises(DataError, match=r"encoder weights config\.json does not describe, e\.g\. "
                                        r"encoder\.layer\.1\."):
        load_hf_encoder(fewer_layers)


def test_prefixed_and_legacy_weight_names(tmp_path):
    """A task model's ``bert.`` prefix and TF-1 era LayerNorm ``gamma`` / ``beta`` load."""
    weights = random_weights(model_config())
    renamed = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma")
               .replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in weights.items()}
    renamed["cls.predictions.bias"] = np.zeros(40, np.float32)
    _, params, _, _ = load_hf_encoder(write_model(tmp_path / "a", weights=renamed),
                                      pooling="pooler")
    _, want, _, _ = load_hf_encoder(write_model(tmp_path / "b", weights=weights),
                                    pooling="pooler")
    jax.tree.map(np.testing.assert_array_equal, params, want)


def test_bfloat16_and_float16_weights(tmp_path):
    """A safetensors file of bfloat16 / float16 tensors (written by hand, per the format: an
    8-byte little-endian header length, a JSON header of dtype, shape and byte offsets, the
    bytes) loads as float32."""
    weights = random_weights(model_config())
    header, chunks, offset = {}, [], 0
    for i, (name, array) in enumerate(sorted(weights.items())):
        dtype, code = (ml_dtypes.bfloat16, "BF16") if i % 2 else (np.float16, "F16")
        data = array.astype(dtype).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        weights[name] = array.astype(dtype).astype(np.float32)
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path = write_model(tmp_path, weights={})
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text
                                             + b"".join(chunks))
    _, params, _, _ = load_hf_encoder(path, pooling="pooler")
    _, want, _, _ = load_hf_encoder(write_model(tmp_path / "f32", weights=weights),
                                    pooling="pooler")
    jax.tree.map(np.testing.assert_array_equal, params, want)
    assert params["layer_0"]["query"]["kernel"].dtype == np.float32


# --- against transformers (PyTorch), where installed ------------------------------------

# transformers' reference, in a fresh interpreter: its models import torch._dynamo, which
# crashes a process that has imported TensorFlow (as cl_jax.data and other tests do).
REFERENCE = """
import json, sys
import numpy as np
import torch
import transformers

for out, model_type, config, texts, max_len in json.loads(sys.argv[1]):
    roberta = model_type == "roberta"
    config_class = transformers.RobertaConfig if roberta else transformers.BertConfig
    model_class = transformers.RobertaModel if roberta else transformers.BertModel
    model = model_class(config_class(**config)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # O(1) weights: transformers initialises biases 0, LayerNorm 1
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3
                    + ("LayerNorm.weight" in name))
    model.save_pretrained(out + "/model")
    torch.save(model.state_dict(), out + "/bin/pytorch_model.bin")
    tokenizer = transformers.AutoTokenizer.from_pretrained(out + "/model")
    tokenizer.save_pretrained(out + "/tokenizer_json")
    ids = tokenizer(texts, padding="max_length", truncation=True, max_length=max_len,
                    return_tensors="pt")
    with torch.no_grad():
        result = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
    np.savez(out + "/reference.npz", ids=ids["input_ids"].numpy(),
             hidden=result.last_hidden_state.numpy(), pooled=result.pooler_output.numpy())
"""
MODEL_TYPES = ("bert", "roberta")


def reference_config(model_type):
    """``model_config`` with transformers' own field names."""
    config = model_config(model_type, hidden_size=32, num_attention_heads=4,
                          intermediate_size=64, vocab_size=50, bos_token_id=0, eos_token_id=2)
    config.pop("model_type")
    return config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """model_type -> a folder with transformers' ``model`` (safetensors, vocabulary files),
    ``bin`` (pytorch_model.bin), ``tokenizer_json`` and ``reference.npz``: one interpreter
    for both models (importing transformers takes most of the time)."""
    for package in ("torch", "transformers"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed")
    folders, jobs = {}, []
    for model_type in MODEL_TYPES:
        folders[model_type] = folder = tmp_path_factory.mktemp(model_type)
        for name in ("model", "bin"):
            (folder / name).mkdir()
            write_tokenizer(folder / name, model_type)
        texts = ROBERTA_TEXTS if model_type == "roberta" else TEXTS
        jobs.append([str(folder), model_type, reference_config(model_type), texts, 14])
    subprocess.run([sys.executable, "-c", REFERENCE, json.dumps(jobs)], check=True,
                   capture_output=True)
    for folder in folders.values():
        (folder / "bin" / "config.json").write_bytes((folder / "model" / "config.json")
                                                     .read_bytes())
    return folders


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_matches_transformers(reference, model_type):
    """transformers' last_hidden_state and pooler_output (eval mode, padded batch), and its
    token ids, from the vocabulary files and from tokenizer.json, with the weights from
    model.safetensors and from pytorch_model.bin."""
    folder = reference[model_type]
    want = np.load(folder / "reference.npz")
    texts = ROBERTA_TEXTS if model_type == "roberta" else TEXTS
    module, params, tokenizer, info = load_hf_encoder(folder / "model", pooling="pooler")
    tokens = tokenizer.encode(texts, 14, add_bos=True)
    np.testing.assert_array_equal(tokens, want["ids"])
    assert (tokens == tokenizer.pad_id).sum() >= 5 and info["weights"].endswith("safetensors")
    from_json = HFTokenizer.from_directory(folder / "tokenizer_json", model_type)
    np.testing.assert_array_equal(from_json.encode(texts, 14, add_bos=True), want["ids"])
    pooled, features, _ = apply(module, params, tokens)
    diffs = (np.abs(features - want["hidden"]).max(), np.abs(pooled - want["pooled"]).max())
    print(f"{model_type}: max |diff| last hidden state {diffs[0]:.1e}, pooler {diffs[1]:.1e}")
    assert max(diffs) < 1e-5

    _, params_bin, _, info = load_hf_encoder(folder / "bin", pooling="pooler")
    assert info["weights"].endswith("pytorch_model.bin")
    jax.tree.map(np.testing.assert_array_equal, params_bin, params)


def test_model_modules_do_not_import_tensorflow():
    code = ("import sys, cl_jax.models.bert, cl_jax.models.hf; "
            "assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
