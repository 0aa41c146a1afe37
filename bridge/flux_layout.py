"""How a Hugging Face state dict maps onto HGFBridge's Flux models, decided and tested in Python.

Julia cannot run where this project is developed, so every decision about weights lives here and the
Julia side only walks the tables this module hands it (see `julia/loading.jl`):

- `flux_table(config, task)`: one `Entry` per state-dict key: the Flux field it fills (a path of
  field names and 1-based indices, read with `Functors.getkeypath`), its transform, and tying.
- `flux_weights(state_dict, config, task)`: the arrays to copy into those fields, already shaped
  as the Julia fields are; `state_dict_from_flux(arrays, config, task)` is the inverse.
- `flux_hyperparameters(config)`: the sizes and names the Julia constructors need, one vocabulary
  for all families (GPT-2's `n_embd` is `hidden_size` here, "gelu" is "gelu_erf", ...).

Array layout. A Julia array is column-major, so a C-order array of shape (a, b) holds the same
bytes as a Julia array of shape (b, a). Here a Julia array is modelled as the numpy array with
the Julia shape and Fortran order, indexed as Julia indexes it (minus one): juliacall wraps such
an array as a `PyArray` of that shape, and Julia copies it elementwise into the field. Transforms:

- `NONE`: the Julia array is the torch array with its axes reversed; no bytes move. Embeddings
  (torch (vocab, dim) -> Flux (dim, vocab)), GPT-2's Conv1D weights (torch (in, out) -> Flux's
  Dense (out, in)), biases and norms.
- `TRANSPOSE`: the Julia array has the torch array's axes in the same order, so the bytes are
  transposed once. `nn.Linear` weights: torch (out, in) and Flux `Dense` (out, in).

The Llama family (Llama, Mistral, Qwen2) maps onto one set of Flux structs (julia/src/llama.jl)
whose fields carry transformers' names; what differs between the three (biases, sliding windows)
and the RoPE frequencies are decided here from bridge.llama_family and handed over as
hyperparameters, so Julia only multiplies frequencies by positions.

Fused projections are kept: GPT-2's `c_attn` stays one (3*hidden, hidden) Dense whose output rows
are query, key, value in that order, as in torch. Tied weights (decoder = word embeddings) are one
Julia array referenced from two fields; their second key is neither loaded nor saved, as
transformers' own `save_pretrained` leaves it out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

# The base-model prefix is also the field under which our Flux heads keep their base model.
from bridge import llama_family
from bridge.checkpoint_keys import BASE_PREFIX, IGNORED_KEYS, match_keys
from bridge.config import PretrainedConfig, load_config
from bridge.errors import BridgeError, ConfigError
from bridge.user_warnings import warn_user

NONE = "none"
TRANSPOSE = "transpose"

PathStep = Union[str, int]
FluxPath = Tuple[PathStep, ...]

TASKS = {
    "bert": ("model", "formaskedlm", "forsequenceclassification"),
    "gpt2": ("model", "lmheadmodel", "forsequenceclassification"),
    "roberta": ("model", "formaskedlm", "forsequenceclassification"),
    "llama": ("model", "forcausallm", "forsequenceclassification"),
    "mistral": ("model", "forcausallm", "forsequenceclassification"),
    "qwen2": ("model", "forcausallm", "forsequenceclassification"),
}
# The Llama-family model types: one set of Flux structs (julia/src/llama.jl), switched by config.
LLAMA_FAMILY = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2"}
# transformers' class names, written into a saved config's "architectures".
ARCHITECTURES = {
    ("bert", "model"): "BertModel",
    ("bert", "formaskedlm"): "BertForMaskedLM",
    ("bert", "forsequenceclassification"): "BertForSequenceClassification",
    ("gpt2", "model"): "GPT2Model",
    ("gpt2", "lmheadmodel"): "GPT2LMHeadModel",
    ("gpt2", "forsequenceclassification"): "GPT2ForSequenceClassification",
    ("roberta", "model"): "RobertaModel",
    ("roberta", "formaskedlm"): "RobertaForMaskedLM",
    ("roberta", "forsequenceclassification"): "RobertaForSequenceClassification",
    **{
        (family, task): prefix + suffix
        for family, prefix in LLAMA_FAMILY.items()
        for task, suffix in (("model", "Model"), ("forcausallm", "ForCausalLM"), ("forsequenceclassification", "ForSequenceClassification"))
    },
}
# The Julia struct of each (family, task): transformers' class name, except that the Llama family
# shares the Llama structs (config switches make them Mistral or Qwen2).
FLUX_TYPES = {
    (family, task): name.replace(LLAMA_FAMILY.get(family, ""), "Llama", 1) if family in LLAMA_FAMILY else name
    for (family, task), name in ARCHITECTURES.items()
}
# Hugging Face activation names -> the functions julia/layers.jl defines (exact torch formulas).
ACTIVATIONS = {
    "gelu": "gelu_erf",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "tanh": "tanh",
}


class FluxLayoutError(BridgeError):
    """A model type or task the Flux side lacks, or arrays that do not fit the table."""


class FluxLayoutWarning(UserWarning):
    """Checkpoint keys the Flux model ignores, or Flux fields the checkpoint does not fill."""


@dataclass(frozen=True)
class Entry:
    """One state-dict key and the Flux field that holds it."""

    key: str  # Hugging Face state-dict key
    path: FluxPath  # field names and 1-based indices from the model root, for Functors.getkeypath
    transform: str  # NONE or TRANSPOSE (see the module docstring)
    tied_to: Optional[str] = None  # the key whose array this field shares; not loaded or saved itself


@dataclass(frozen=True)
class FluxWeight:
    """An array ready for Julia: Julia's shape, Fortran order; bf16 travels as its uint16 bits."""

    key: str
    path: FluxPath
    array: np.ndarray
    bfloat16_bits: bool


# --------------------------------------------------------------------------------------------
# Hyperparameters


def flux_hyperparameters(config: PretrainedConfig) -> Dict[str, Any]:
    """Sizes, names and flags the Julia constructors read, in one vocabulary for every family."""
    family = _family(config)
    common = {
        "model_type": family,
        "vocab_size": int(config.vocab_size),
        "hidden_size": int(config.hidden_size),
        "num_layers": int(config.num_hidden_layers),
        "num_heads": int(config.num_attention_heads),
        "max_positions": int(config.max_position_embeddings),
        "num_labels": int(config.num_labels),
        "pad_token_id": config.pad_token_id,
        "tie_word_embeddings": bool(config.tie_word_embeddings),
        "initializer_range": float(config.initializer_range),
    }
    if common["hidden_size"] % common["num_heads"]:
        raise ConfigError(f"hidden size {common['hidden_size']} is not a multiple of {common['num_heads']} heads")
    if family in LLAMA_FAMILY:
        return {**common, **_llama_hyperparameters(config)}
    if family == "gpt2":
        _refuse(config, "scale_attn_by_inverse_layer_idx", False)
        _refuse(config, "scale_attn_weights", True)
        _refuse(config, "add_cross_attention", False)
        return {
            **common,
            "intermediate_size": int(config.n_inner or 4 * config.hidden_size),
            "layer_norm_eps": float(config.layer_norm_epsilon),
            "activation": _activation(config.activation_function),
            "dropout": float(config.resid_pdrop),
            "embedding_dropout": float(config.embd_pdrop),
            "attention_dropout": float(config.attn_pdrop),
        }
    # The Flux encoder has absolute positions only and no causal or cross-attention.
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise ConfigError(
            f"{family} config position_embedding_type={config.position_embedding_type!r}: "
            "the Flux model supports only 'absolute'"
        )
    _refuse(config, "is_decoder", False)
    return {
        **common,
        "intermediate_size": int(config.intermediate_size),
        "type_vocab_size": int(config.type_vocab_size),
        "layer_norm_eps": float(config.layer_norm_eps),
        "activation": _activation(config.hidden_act),
        "dropout": float(config.hidden_dropout_prob),
        "attention_dropout": float(config.attention_probs_dropout_prob),
        # transformers' rule for both heads: classifier_dropout, else the hidden dropout.
        "classifier_dropout": float(
            config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout
        ),
        # RoBERTa numbers positions after the padding id (fairseq); BERT counts from the start.
        "position_rule": "after_padding" if family == "roberta" else "absolute",
    }


def _llama_hyperparameters(config: PretrainedConfig) -> Dict[str, Any]:
    """Llama, Mistral, Qwen2: sizes, per-layer switches (bridge.llama_family) and the RoPE
    frequencies, computed here once so that Julia only multiplies them by positions."""
    rope_type = config.rope_parameters.get("rope_type", "default")
    if rope_type == "dynamic":  # its frequencies change with every longer input: not in Flux
        raise ConfigError(f"{config.model_type} config rope_type 'dynamic': the Flux model supports only fixed RoPE types")
    inv_freq, scaling = llama_family.rope_frequencies(config)
    switches = [llama_family.layer_switches(config, i) for i in range(config.num_hidden_layers)]
    qkv_bias, output_bias, mlp_bias = (bool(switches[0][i]) for i in range(3))
    return {
        "num_key_value_heads": int(config.num_key_value_heads),
        "head_dim": int(llama_family.head_dim(config)),
        "intermediate_size": int(config.intermediate_size),
        "rms_norm_eps": float(config.rms_norm_eps),
        "activation": _activation(config.hidden_act),
        "attention_dropout": float(config.attention_dropout),
        "qkv_bias": qkv_bias,
        "output_bias": output_bias,
        "mlp_bias": mlp_bias,
        # Per layer: how many keys back a query may see (itself included), or None for all.
        "sliding_windows": [None if window is None else int(window) for *_, window in switches],
        "rope_inv_freq": [float(value) for value in inv_freq],  # float32 values, exact as doubles
        "rope_scaling": float(scaling),
    }


def _family(config: PretrainedConfig) -> str:
    family = getattr(config, "model_type", "")
    if family not in TASKS:
        raise FluxLayoutError(f"model type {family!r} has no Flux model; expected one of {', '.join(TASKS)}")
    return family


def _activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ConfigError(f"activation {name!r} has no Flux counterpart; expected one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _refuse(config: PretrainedConfig, name: str, supported: bool) -> None:
    if bool(getattr(config, name)) != supported:
        raise ConfigError(
            f"{config.model_type} config {name}={getattr(config, name)!r}: the Flux model supports only {supported}"
        )


# --------------------------------------------------------------------------------------------
# Tables


def flux_table(config: PretrainedConfig, task: str) -> List[Entry]:
    """Every state-dict key of `task` ("model", "formaskedlm", ...) and the Flux field holding it."""
    family = _family(config)
    if task not in TASKS[family]:
        raise FluxLayoutError(f"{family} has no Flux task {task!r}; expected one of {', '.join(TASKS[family])}")
    if family == "gpt2":
        return _gpt2_table(config, task)
    if family in LLAMA_FAMILY:
        return _llama_table(config, task)
    return _encoder_table(config, task, family)


def _linear(key: str, path: FluxPath, bias: bool = True) -> List[Entry]:
    """nn.Linear -> Flux Dense: the weight changes byte order, the bias does not."""
    entries = [Entry(f"{key}.weight", path + ("weight",), TRANSPOSE)]
    if bias:
        entries.append(Entry(f"{key}.bias", path + ("bias",), NONE))
    return entries


def _conv1d(key: str, path: FluxPath) -> List[Entry]:
    """GPT-2's Conv1D stores (in, out) row-major: the bytes already are Flux's (out, in)."""
    return [Entry(f"{key}.weight", path + ("weight",), NONE), Entry(f"{key}.bias", path + ("bias",), NONE)]


def _norm(key: str, path: FluxPath) -> List[Entry]:
    return [Entry(f"{key}.weight", path + ("weight",), NONE), Entry(f"{key}.bias", path + ("bias",), NONE)]


def _encoder_table(config: PretrainedConfig, task: str, family: str) -> List[Entry]:
    """BERT and RoBERTa: one encoder layout, different heads."""
    if task == "model":
        return _encoder_base(config, "", (), pooler=True)
    prefix = BASE_PREFIX[family]
    words = f"{prefix}.embeddings.word_embeddings.weight"
    if task == "forsequenceclassification":
        if family == "bert":
            base = _encoder_base(config, f"{prefix}.", (prefix,), pooler=True)
            return base + _linear("classifier", ("classifier",))
        base = _encoder_base(config, f"{prefix}.", (prefix,), pooler=False)
        return base + _linear("classifier.dense", ("classifier", "dense")) + _linear(
            "classifier.out_proj", ("classifier", "out_proj")
        )
    # formaskedlm: dense, activation, norm, then the decoder (tied to the word embeddings) + bias.
    base = _encoder_base(config, f"{prefix}.", (prefix,), pooler=False)
    if family == "bert":
        dense, norm, decoder, bias = (
            "cls.predictions.transform.dense",
            "cls.predictions.transform.LayerNorm",
            "cls.predictions.decoder",
            "cls.predictions.bias",
        )
    else:
        dense, norm, decoder, bias = "lm_head.dense", "lm_head.layer_norm", "lm_head.decoder", "lm_head.bias"
    head = [*_linear(dense, ("head", "dense")), *_norm(norm, ("head", "norm"))]
    # torch (vocab, hidden) row-major reads as Julia (hidden, vocab): the embedding's layout.
    if config.tie_word_embeddings:
        return base + head + [
            Entry(f"{decoder}.weight", ("head", "weight"), NONE, words),
            Entry(bias, ("head", "bias"), NONE),
            Entry(f"{decoder}.bias", ("head", "bias"), NONE, bias),
        ]
    # Untied, transformers adds `decoder.bias` and keeps `bias` as a parameter its forward never
    # reads: the Flux head's bias is `decoder.bias`, and `bias` is not carried (saved files lack it).
    return base + head + [
        Entry(f"{decoder}.weight", ("head", "weight"), NONE),
        Entry(f"{decoder}.bias", ("head", "bias"), NONE),
        Entry(bias, ("head", "bias"), NONE, f"{decoder}.bias"),
    ]


def _encoder_base(config: PretrainedConfig, key: str, path: FluxPath, *, pooler: bool) -> List[Entry]:
    emb = path + ("embeddings",)
    entries = [
        Entry(f"{key}embeddings.word_embeddings.weight", emb + ("word_embeddings", "weight"), NONE),
        Entry(f"{key}embeddings.position_embeddings.weight", emb + ("position_embeddings", "weight"), NONE),
        Entry(f"{key}embeddings.token_type_embeddings.weight", emb + ("token_type_embeddings", "weight"), NONE),
        *_norm(f"{key}embeddings.LayerNorm", emb + ("norm",)),
    ]
    for index in range(config.num_hidden_layers):
        layer_key, layer = f"{key}encoder.layer.{index}.", path + ("layers", index + 1)
        entries += [
            *_linear(f"{layer_key}attention.self.query", layer + ("attention", "query")),
            *_linear(f"{layer_key}attention.self.key", layer + ("attention", "key")),
            *_linear(f"{layer_key}attention.self.value", layer + ("attention", "value")),
            *_linear(f"{layer_key}attention.output.dense", layer + ("attention", "output")),
            *_norm(f"{layer_key}attention.output.LayerNorm", layer + ("attention_norm",)),
            *_linear(f"{layer_key}intermediate.dense", layer + ("intermediate",)),
            *_linear(f"{layer_key}output.dense", layer + ("output",)),
            *_norm(f"{layer_key}output.LayerNorm", layer + ("output_norm",)),
        ]
    if pooler:
        entries += _linear(f"{key}pooler.dense", path + ("pooler",))
    return entries


def _gpt2_table(config: PretrainedConfig, task: str) -> List[Entry]:
    if task == "model":
        return _gpt2_base(config, "", ())
    base = _gpt2_base(config, "transformer.", ("transformer",))
    if task == "lmheadmodel":
        tied = "transformer.wte.weight" if config.tie_word_embeddings else None
        return base + [Entry("lm_head.weight", ("lm_head", "weight"), NONE, tied)]
    return base + _linear("score", ("score",), bias=False)


def _gpt2_base(config: PretrainedConfig, key: str, path: FluxPath) -> List[Entry]:
    entries = [
        Entry(f"{key}wte.weight", path + ("wte", "weight"), NONE),
        Entry(f"{key}wpe.weight", path + ("wpe", "weight"), NONE),
    ]
    for index in range(config.num_hidden_layers):
        block_key, block = f"{key}h.{index}.", path + ("layers", index + 1)
        entries += [
            *_norm(f"{block_key}ln_1", block + ("ln_1",)),
            *_conv1d(f"{block_key}attn.c_attn", block + ("attention", "c_attn")),
            *_conv1d(f"{block_key}attn.c_proj", block + ("attention", "c_proj")),
            *_norm(f"{block_key}ln_2", block + ("ln_2",)),
            *_conv1d(f"{block_key}mlp.c_fc", block + ("mlp", "c_fc")),
            *_conv1d(f"{block_key}mlp.c_proj", block + ("mlp", "c_proj")),
        ]
    return entries + _norm(f"{key}ln_f", path + ("ln_f",))


def _llama_table(config: PretrainedConfig, task: str) -> List[Entry]:
    """Llama, Mistral, Qwen2: the Flux fields carry transformers' names; q/k/v stay separate."""
    if task == "model":
        return _llama_base(config, "", ())
    base = _llama_base(config, "model.", ("model",))
    if task == "forcausallm":
        tied = "model.embed_tokens.weight" if config.tie_word_embeddings else None
        # torch (vocab, hidden) row-major reads as Julia (hidden, vocab): the embedding's layout.
        return base + [Entry("lm_head.weight", ("lm_head", "weight"), NONE, tied)]
    return base + _linear("score", ("score",), bias=False)


def _llama_base(config: PretrainedConfig, key: str, path: FluxPath) -> List[Entry]:
    entries = [Entry(f"{key}embed_tokens.weight", path + ("embed_tokens", "weight"), NONE)]
    for index in range(config.num_hidden_layers):
        qkv_bias, output_bias, mlp_bias, _ = llama_family.layer_switches(config, index)
        layer_key, layer = f"{key}layers.{index}.", path + ("layers", index + 1)
        entries += [
            *_linear(f"{layer_key}self_attn.q_proj", layer + ("self_attn", "q_proj"), bias=qkv_bias),
            *_linear(f"{layer_key}self_attn.k_proj", layer + ("self_attn", "k_proj"), bias=qkv_bias),
            *_linear(f"{layer_key}self_attn.v_proj", layer + ("self_attn", "v_proj"), bias=qkv_bias),
            *_linear(f"{layer_key}self_attn.o_proj", layer + ("self_attn", "o_proj"), bias=output_bias),
            *_linear(f"{layer_key}mlp.gate_proj", layer + ("mlp", "gate_proj"), bias=mlp_bias),
            *_linear(f"{layer_key}mlp.up_proj", layer + ("mlp", "up_proj"), bias=mlp_bias),
            *_linear(f"{layer_key}mlp.down_proj", layer + ("mlp", "down_proj"), bias=mlp_bias),
            Entry(f"{layer_key}input_layernorm.weight", layer + ("input_layernorm", "weight"), NONE),
            Entry(f"{layer_key}post_attention_layernorm.weight", layer + ("post_attention_layernorm", "weight"), NONE),
        ]
    return entries + [Entry(f"{key}norm.weight", path + ("norm", "weight"), NONE)]


# --------------------------------------------------------------------------------------------
# Arrays across the language boundary


def to_flux_array(array: np.ndarray, transform: str) -> np.ndarray:
    """The torch-layout (C-order) `array` as the Julia field holds it: Julia's shape, F-order."""
    if transform == NONE:
        return np.asfortranarray(array.T)  # a view: C-order reversed is F-order
    if transform == TRANSPOSE:
        return np.asfortranarray(array)  # the one real transpose of the bytes
    raise ValueError(f"unknown transform {transform!r}")


def from_flux_array(array: np.ndarray, transform: str) -> np.ndarray:
    """Inverse of `to_flux_array`: a Julia-shaped array back to torch's C-order layout, copied once
    into memory of its own (Julia's arrays may change or go away after the call)."""
    if transform == NONE:
        return np.array(array.T, order="C")
    if transform == TRANSPOSE:
        return np.array(array, order="C")
    raise ValueError(f"unknown transform {transform!r}")


def flux_weights(
    state_dict: Mapping[str, np.ndarray], config: PretrainedConfig, task: str
) -> List[FluxWeight]:
    """The arrays of `state_dict` for the Flux model of `task`, in table order.

    Checkpoint keys are matched by bridge.checkpoint_keys, the rule of transformers and of our
    torch models (base-model prefix present or absent, legacy `LayerNorm.gamma`/`beta`). Keys the model does not
    use and fields the checkpoint does not fill are reported in one FluxLayoutWarning each (the
    Julia model keeps its fresh initialisation for the latter).
    """
    table = flux_table(config, task)
    arrays = _match_checkpoint(state_dict, table, _family(config))
    weights, missing = [], []
    for entry in table:
        if entry.tied_to is not None:
            continue
        if entry.key not in arrays:
            missing.append(entry.key)
            continue
        array, is_bf16 = _crossable(np.asarray(arrays[entry.key]))
        weights.append(FluxWeight(entry.key, entry.path, to_flux_array(array, entry.transform), is_bf16))
    if missing:
        warn_user(
            f"{len(missing)} Flux weights not in the checkpoint, left newly initialised: {', '.join(missing)}",
            FluxLayoutWarning,
        )
    return weights


def _match_checkpoint(
    state_dict: Mapping[str, np.ndarray], table: Sequence[Entry], family: str
) -> Dict[str, np.ndarray]:
    """{table key: array} by bridge.checkpoint_keys' rule, the one the torch models use."""
    match = match_keys(
        state_dict,
        [entry.key for entry in table if entry.tied_to is None],
        BASE_PREFIX[family],
        tied={entry.key: entry.tied_to for entry in table if entry.tied_to is not None},
        ignored=IGNORED_KEYS[family],
    )
    if match.unused:
        warn_user(
            f"{len(match.unused)} checkpoint weights unused by the Flux model: {', '.join(match.unused)}",
            FluxLayoutWarning,
        )
    return {key: state_dict[file_key] for key, file_key in match.mapping.items()}


def _crossable(array: np.ndarray) -> Tuple[np.ndarray, bool]:
    """An array juliacall can hand over: bf16 as its uint16 bits, float8 and others as float32."""
    if array.dtype.name == "bfloat16":
        return array.view(np.uint16), True
    if array.dtype in (np.float16, np.float32, np.float64):
        return array, False
    return array.astype(np.float32), False


def state_dict_from_flux(
    arrays: Mapping[str, Any], config: PretrainedConfig, task: str
) -> Dict[str, np.ndarray]:
    """A state dict (C-order numpy arrays) from the Flux model's arrays, keyed by state-dict key.

    `arrays` holds one Julia-shaped array per untied table entry (numpy arrays, or the juliacall
    wrappers Julia returns, which numpy reads without a copy); the result owns its memory. Tied
    keys are left out, as transformers' `save_pretrained` does.
    """
    state_dict = {}
    for entry in flux_table(config, task):
        if entry.tied_to is not None:
            continue
        if entry.key not in arrays:
            raise FluxLayoutError(f"Flux arrays lack {entry.key!r} (field {'.'.join(map(str, entry.path))})")
        state_dict[entry.key] = from_flux_array(np.asarray(arrays[entry.key]), entry.transform)
    return state_dict


# --------------------------------------------------------------------------------------------
# Token ids: Julia counts from 1 and keeps (seq, batch) column-major.


def token_ids_to_flux(ids: np.ndarray) -> np.ndarray:
    """(batch, seq) 0-based ids (a tokenizer's output) -> Julia's (seq, batch) 1-based Int64 ids."""
    ids = np.asarray(ids)
    if ids.dtype == object:  # rows of different lengths: a Julia matrix needs equal ones
        raise FluxLayoutError(
            "token ids of different lengths cannot form a (seq, batch) matrix: "
            "encode with padding=true (the tokenizer needs a pad token), or one text at a time"
        )
    return np.asfortranarray(ids.astype(np.int64).T + 1)


def token_ids_from_flux(ids: Any) -> np.ndarray:
    """Julia 1-based ids, (seq,) or (seq, batch) -> 0-based ids, (seq,) or (batch, seq)."""
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).T - 1)


def mask_to_flux(mask: np.ndarray) -> np.ndarray:
    """(batch, seq) 0/1 attention mask -> Julia's (seq, batch) Bool mask, true = attend (NNlib)."""
    return np.asfortranarray(np.asarray(mask).T != 0)


# --------------------------------------------------------------------------------------------
# Files: what Julia calls to load and save (one implementation of the Hub, store and formats).


def read_for_flux(
    source: Union[str, os.PathLike], task: str = "model", *, revision: Optional[str] = None
) -> Tuple[PretrainedConfig, List[FluxWeight]]:
    """The config and Flux-ready weights of `source` (a local directory or a Hub repo id)."""
    from bridge.hub import fetch_file
    from bridge.models.checkpoint import read_weights

    config = load_config(fetch_file(source, "config.json", revision=revision))
    return config, flux_weights(read_weights(source, revision=revision), config, task)


def save_from_flux(
    directory: Union[str, os.PathLike],
    config: PretrainedConfig,
    task: str,
    arrays: Mapping[str, Any],
    *,
    format: str = "safetensors",
) -> Path:
    """Write config.json and the weights (`format` "safetensors" or "bin") as transformers lays them out."""
    from bridge.models.checkpoint import write_weights

    if format not in ("safetensors", "bin"):
        raise FluxLayoutError(f"unknown checkpoint format {format!r}; expected 'safetensors' or 'bin'")
    state_dict = state_dict_from_flux(arrays, config, task)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    saved = type(config).from_dict(config.to_dict())  # the caller's config stays as it was
    saved.architectures = [ARCHITECTURES[(_family(config), task)]]
    saved.save_pretrained(directory)
    write_weights(state_dict, directory, safe_serialization=format == "safetensors")
    return directory
