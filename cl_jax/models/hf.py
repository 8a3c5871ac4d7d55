"""A pretrained BERT / RoBERTa from a local Hugging Face model directory (never downloaded).

``load_hf_encoder(directory)`` reads what transformers' ``save_pretrained`` writes (for the
model and its tokenizer):

- ``config.json``: ``model_type`` ``bert`` or ``roberta`` and the architecture, mapped to
  ``cl_jax.models.bert.BertEncoder``'s fields.
- the weights: ``model.safetensors`` (read with the ``safetensors`` package, as NumPy; any
  float dtype, bfloat16 included, becomes float32), else ``pytorch_model.bin`` (needs PyTorch).
  The weights of a ``BertModel`` / ``RobertaModel``, or of a model with a head
  (``BertForMaskedLM``, ...: the ``bert.`` / ``roberta.`` prefix is dropped, the heads
  ignored); TF-1 era names (``LayerNorm.gamma`` / ``beta``) are accepted.
- the tokenizer: ``tokenizer.json``, or ``vocab.txt`` (BERT) / ``vocab.json`` and
  ``merges.txt`` (RoBERTa), by ``cl_jax.data.hf_tokenizer``.

PyTorch's ``nn.Linear`` stores its weight (out, in); Flax's ``Dense`` kernel is its transpose.
With these parameters the encoder's token features are transformers' ``last_hidden_state``
(eval mode, ``attention_mask = ids != pad``) and its ``pooler`` pooling is their
``pooler_output``. Needs the ``safetensors`` and ``tokenizers`` packages (the ``hf`` extra).
"""

import json
import os

import flax.traverse_util
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from cl_jax.errors import ConfigError, DataError, UserError
from cl_jax.models.bert import ACTIVATIONS, POOLINGS, BertEncoder

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "pytorch_model.bin"
MODEL_TYPES = ("bert", "roberta")
CONTENTS = (f"{CONFIG_FILE}, the weights ({SAFETENSORS_FILE} or {TORCH_FILE}) and the "
            "tokenizer (tokenizer.json, or vocab.txt for BERT / vocab.json and merges.txt for "
            "RoBERTa), as save_pretrained writes them for a model and its tokenizer")
# Layer-norm epsilon and pad id when config.json omits them (transformers' defaults).
DEFAULTS = {"bert": {"layer_norm_eps": 1e-12, "pad_token_id": 0},
            "roberta": {"layer_norm_eps": 1e-5, "pad_token_id": 1}}
_FLOATS = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16}
# Flax module name -> transformers module name, for the encoder and for each layer.
_TOP = {"word_embeddings": "embeddings.word_embeddings",
        "position_embeddings": "embeddings.position_embeddings",
        "token_type_embeddings": "embeddings.token_type_embeddings",
        "embedding_norm": "embeddings.LayerNorm", "pooler": "pooler.dense"}
_LAYER = {"query": "attention.self.query", "key": "attention.self.key",
          "value": "attention.self.value", "attention_output": "attention.output.dense",
          "attention_norm": "attention.output.LayerNorm", "intermediate": "intermediate.dense",
          "output": "output.dense", "output_norm": "output.LayerNorm"}
_LEAF = {"embedding": "weight", "kernel": "weight", "scale": "weight", "bias": "bias"}
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def read_config(directory):
    """``config.json`` of a BERT / RoBERTa directory, checked: a dict."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        what = "no such directory" if not os.path.isdir(directory) else f"no {CONFIG_FILE}"
        raise DataError(f"Cannot load a Hugging Face model from {directory}: {what}. The "
                        f"directory must contain {CONTENTS}.")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"Cannot read {path}: {err}.") from err
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"{path}: model_type {model_type!r} is not supported; cl_jax loads "
                          f"{' and '.join(MODEL_TYPES)} encoders.")
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute" or config.get("is_decoder"):
        raise ConfigError(f"{path}: only bidirectional encoders with absolute position "
                          f"embeddings are supported (position_embedding_type "
                          f"{position_type!r}, is_decoder {config.get('is_decoder')}).")
    if config.get("hidden_act", "gelu") not in ACTIVATIONS:
        raise ConfigError(f"{path}: hidden_act {config['hidden_act']!r} is not supported; "
                          f"supported: {', '.join(ACTIVATIONS)}.")
    return {**DEFAULTS[model_type], **config}


def encoder_from_config(config, pooling="cls", dropout=None, dtype=jnp.float32):
    """The ``BertEncoder`` of a ``config.json`` dict. ``dropout``: one rate for the hidden
    states and the attention weights, or None for the config's own (0.1 in BERT and RoBERTa)."""
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    c = config
    return BertEncoder(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
        num_layers=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
        intermediate_size=c["intermediate_size"],
        max_position_embeddings=c["max_position_embeddings"],
        type_vocab_size=c.get("type_vocab_size", 2), hidden_act=c.get("hidden_act", "gelu"),
        layer_norm_eps=c["layer_norm_eps"],
        hidden_dropout=c.get("hidden_dropout_prob", 0.1) if dropout is None else dropout,
        attention_dropout=c.get("attention_probs_dropout_prob", 0.1) if dropout is None
        else dropout,
        pad_id=c["pad_token_id"], roberta_positions=c["model_type"] == "roberta",
        pooling=pooling, dtype=dtype)


def read_weights(directory):
    """``(name -> float32 / int array, path)`` of ``model.safetensors``, else of
    ``pytorch_model.bin``."""
    path = os.path.join(directory, SAFETENSORS_FILE)
    if os.path.isfile(path):
        return _read_safetensors(path), path
    path = os.path.join(directory, TORCH_FILE)
    if os.path.isfile(path):
        return _read_torch(path), path
    sharded = [f for f in os.listdir(directory) if f.endswith(".index.json")]
    note = f" (sharded weights, {sharded[0]}, are not read)" if sharded else ""
    raise DataError(f"{directory} has no model weights: neither {SAFETENSORS_FILE} nor "
                    f"{TORCH_FILE}{note}. The directory must contain {CONTENTS}.")


def _read_safetensors(path):
    safetensors = _require("safetensors")
    with open(path, "rb") as f:
        data = f.read()
    try:
        tensors = safetensors.deserialize(data)
    except Exception as err:  # safetensors raises its own SafetensorError
        raise DataError(f"{path} is not a readable safetensors file: {err}.") from err
    out = {}
    for name, view in tensors:
        if view["dtype"] in _FLOATS:
            array = np.frombuffer(view["data"], _FLOATS[view["dtype"]]).astype(np.float32)
            out[name] = array.reshape(view["shape"])
    return out


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise DataError(
            f"{path} is a PyTorch checkpoint, and PyTorch is not installed to read it. Install "
            "torch, or convert the weights once to model.safetensors where transformers is "
            "installed: AutoModel.from_pretrained(directory).save_pretrained(directory) (it "
            "writes safetensors).") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {name: t.float().numpy() for name, t in state.items() if t.is_floating_point()}


def _canonical(name, model_type):
    """A transformers weight name without the task model's prefix and TF-1 era names."""
    name = name.removeprefix(f"{model_type}.")
    if name.endswith(".gamma") or name.endswith(".beta"):
        stem, leaf = name.rsplit(".", 1)
        name = f"{stem}.{'weight' if leaf == 'gamma' else 'bias'}"
    return name


def _hf_name(path):
    """The transformers weight name of a Flax parameter path."""
    module, *rest, leaf = path
    if module.startswith("layer_"):
        prefix = f"encoder.layer.{module.removeprefix('layer_')}.{_LAYER[rest[0]]}"
    else:
        prefix = _TOP[module]
    return f"{prefix}.{_LEAF[leaf]}"


def params_from_weights(module, weights, model_type, source="<weights>"):
    """The Flax parameters of ``module`` from transformers weights (name -> array).

    Every parameter must be there with the right shape; encoder weights the module lacks (a
    config with fewer layers than the file) are an error too. Heads and buffers are ignored.
    """
    weights = {_canonical(k, model_type): v for k, v in weights.items()}
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
    flat, used, missing = {}, set(), []
    for path, shape in flax.traverse_util.flatten_dict(shapes["params"]).items():
        name = _hf_name(path)
        if name not in weights:
            missing.append(name)
            continue
        array = weights[name].T if path[-1] == "kernel" else weights[name]
        if array.shape != shape.shape:
            raise DataError(f"{source}: {name} has shape {weights[name].shape}, but config.json "
                            f"makes the parameter {'/'.join(path)} {shape.shape}"
                            f"{' (transposed)' if path[-1] == 'kernel' else ''}.")
        flat[path] = np.asarray(array, np.float32)
        used.add(name)
    if missing:
        hint = (" It has no pooler: use pooling 'cls' or 'mean'." if
                all(m.startswith("pooler.") for m in missing) else "")
        raise DataError(f"{source} lacks {len(missing)} weights of the {model_type} encoder "
                        f"config.json describes, e.g. {', '.join(missing[:3])}.{hint}")
    extra = sorted(k for k in weights if k.startswith(("embeddings.", "encoder."))
                   and k not in used and k not in _BUFFERS)
    if extra:
        raise DataError(f"{source} holds encoder weights config.json does not describe, e.g. "
                        f"{', '.join(extra[:3])}; config.json and the weights disagree.")
    return flax.traverse_util.unflatten_dict(flat)


def load_hf_encoder(directory, pooling="cls", dropout=None, dtype=jnp.float32):
    """``(module, params, tokenizer, info)`` of the BERT / RoBERTa in a local directory.

    ``module``: a ``BertEncoder`` (apply it as ``module.apply({"params": params}, tokens)``);
    ``pooling``: ``cls``, ``mean`` or ``pooler``; ``dropout``: see ``encoder_from_config``;
    ``tokenizer``: a ``cl_jax.data.hf_tokenizer.HFTokenizer`` (encode with ``add_bos=True``);
    ``info``: what was loaded, from where.
    """
    directory = os.fspath(directory)
    config = read_config(directory)
    model_type = config["model_type"]
    module = encoder_from_config(config, pooling, dropout, dtype)
    _require("tokenizers")
    from cl_jax.data.hf_tokenizer import HFTokenizer  # cl_jax.data's __init__ needs TensorFlow

    tokenizer = HFTokenizer.from_directory(directory, model_type)
    if tokenizer.vocab_size > module.vocab_size:
        raise DataError(f"The tokenizer {tokenizer.path} has {tokenizer.vocab_size} tokens, more "
                        f"than the {module.vocab_size} rows of the word embeddings "
                        f"({os.path.join(directory, CONFIG_FILE)}: vocab_size); the tokenizer "
                        "belongs to another model.")
    if tokenizer.pad_id != module.pad_id:
        raise ConfigError(f"The pad token of {tokenizer.path} has id {tokenizer.pad_id}, but "
                          f"{os.path.join(directory, CONFIG_FILE)} says pad_token_id "
                          f"{module.pad_id}; they must agree.")
    weights, weights_path = read_weights(directory)
    params = params_from_weights(module, weights, model_type, weights_path)
    info = {"directory": directory, "model_type": model_type, "weights": weights_path,
            "tokenizer": tokenizer.path, "vocab_size": module.vocab_size,
            "hidden_size": module.hidden_size, "num_layers": module.num_layers,
            "num_heads": module.num_heads, "max_len": module.max_len, "pad_id": module.pad_id,
            "pooling": pooling, "has_pooler": "pooler.dense.weight" in
            {_canonical(k, model_type) for k in weights}}
    return module, params, tokenizer, info


def _require(package):
    try:
        return __import__(package)
    except ImportError:
        raise UserError(f"Loading a Hugging Face model needs the {package} package: pip "
                        "install safetensors tokenizers (the cl_jax 'hf' extra).") from None
