"""Model configurations: a model's config.json as a Python object.

The defaults, attribute names and aliases follow Hugging Face `transformers`, so a config.json written by
either side reads back the same in the other. `BertConfig`, `GPT2Config`, `RobertaConfig`, `LlamaConfig`,
`MistralConfig` and `Qwen2Config` serve our model families; any other `model_type` gets a plain
`PretrainedConfig` holding what the file says.
Importing this module does not import torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Dict, Optional, Union

from bridge.errors import ConfigError

# Defaults every transformers config has, whatever its model type.
COMMON_DEFAULTS: Dict[str, Any] = {
    "architectures": None,
    "output_hidden_states": False,
    "output_attentions": False,
    "return_dict": True,
    "dtype": None,
    "is_encoder_decoder": False,
    "is_decoder": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
    "chunk_size_feed_forward": 0,
    "problem_type": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "pad_token_id": None,
}
DEFAULT_NUM_LABELS = 2  # a config that names no labels has LABEL_0 and LABEL_1, as in transformers


def _numbered_labels(count: int) -> Dict[int, str]:
    """The id2label transformers makes for `num_labels=count`: {0: "LABEL_0", ...}."""
    return {i: f"LABEL_{i}" for i in range(count)}


class PretrainedConfig:
    """A config: attribute access to every entry, defaults from the family, JSON in and out."""

    model_type: ClassVar[str] = ""
    family_defaults: ClassVar[Dict[str, Any]] = {}
    # transformers' aliases: GPT-2 calls hidden_size `n_embd`, and both names work.
    attribute_map: ClassVar[Dict[str, str]] = {}

    def __init__(self, **entries: Any) -> None:
        entries = {self.attribute_map.get(key, key): value for key, value in entries.items()}
        num_labels = entries.pop("num_labels", None)
        if "id2label" in entries and entries["id2label"] is not None:
            entries["id2label"] = {int(k): v for k, v in entries["id2label"].items()}
        elif num_labels is not None:
            entries["id2label"] = _numbered_labels(num_labels)
        if "id2label" in entries and "label2id" not in entries:
            entries["label2id"] = {v: k for k, v in entries["id2label"].items()}
        if "torch_dtype" in entries and "dtype" not in entries:  # transformers < 5 wrote torch_dtype
            entries["dtype"] = entries.pop("torch_dtype")
        if self.model_type:
            entries["model_type"] = self.model_type
        elif "model_type" in entries:  # a generic config keeps the file's type
            object.__setattr__(self, "model_type", entries["model_type"])
        object.__setattr__(self, "_given", list(entries))
        object.__setattr__(self, "_values", {**COMMON_DEFAULTS, **self.family_defaults, **entries})
        self.derive_entries()

    def derive_entries(self) -> None:
        """Fill the entries a family derives from others (transformers' `__post_init__`); none here."""

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values", {})
        key = self.attribute_map.get(name, name)
        if key in values:
            return values[key]
        if key == "id2label":
            return _numbered_labels(DEFAULT_NUM_LABELS)
        if key == "label2id":
            return {v: k for k, v in self.id2label.items()}
        raise AttributeError(f"{type(self).__name__} has no entry {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        key = self.attribute_map.get(name, name)
        if key == "num_labels":
            self.__init_labels(value)
            return
        if key not in self._values:
            self._given.append(key)
        self._values[key] = value

    def __init_labels(self, num_labels: int) -> None:
        self.id2label = _numbered_labels(num_labels)
        self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def __contains__(self, name: str) -> bool:
        return self.attribute_map.get(name, name) in self._values

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __repr__(self) -> str:
        shown = ", ".join(f"{key}={self._values[key]!r}" for key in self._given)
        return f"{type(self).__name__} with {len(self._given)} entries: {shown}"

    def to_dict(self) -> Dict[str, Any]:
        """Every entry, defaults included, with label maps keyed as in config.json."""
        values = dict(self._values)
        if "id2label" not in values:
            values["id2label"] = self.id2label
            values["label2id"] = self.label2id
        return values

    def to_json_string(self) -> str:
        """config.json text: like transformers, common entries only where they differ from default."""
        values = {
            key: value
            for key, value in self.to_dict().items()
            if key not in COMMON_DEFAULTS or key in self.family_defaults or value != COMMON_DEFAULTS[key]
        }
        if values["id2label"] == _numbered_labels(DEFAULT_NUM_LABELS):
            del values["id2label"], values["label2id"]
        if "id2label" in values:
            values["id2label"] = {str(k): v for k, v in values["id2label"].items()}
        return json.dumps(values, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: Union[str, os.PathLike]) -> None:
        """Write config.json atomically (temp file, then rename)."""
        from pickle_io.atomic_file import replacing  # here: configs are read far more than written

        with replacing(path) as temporary:
            temporary.write_text(self.to_json_string(), encoding="utf-8")

    def save_pretrained(self, directory: Union[str, os.PathLike]) -> None:
        """Write `<directory>/config.json`, creating the directory."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.to_json_file(Path(directory) / "config.json")

    @classmethod
    def from_dict(cls, entries: Dict[str, Any]) -> "PretrainedConfig":
        entries = dict(entries)
        entries.pop("transformers_version", None)
        if cls is not PretrainedConfig:
            entries.pop("model_type", None)  # a family class sets its own; a generic one keeps it
        return cls(**entries)

    @classmethod
    def from_json_file(cls, path: Union[str, os.PathLike]) -> "PretrainedConfig":
        return cls.from_dict(read_config_json(path))


class BertConfig(PretrainedConfig):
    model_type = "bert"
    family_defaults = {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "use_cache": True,
        "classifier_dropout": None,
    }


class RobertaConfig(BertConfig):
    model_type = "roberta"
    family_defaults = {
        **BertConfig.family_defaults,
        "vocab_size": 50265,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }


class GPT2Config(PretrainedConfig):
    model_type = "gpt2"
    attribute_map = {
        "hidden_size": "n_embd",
        "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    }
    family_defaults = {
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attn_pdrop": 0.1,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "summary_activation": None,
        "summary_proj_to_labels": True,
        "summary_first_dropout": 0.1,
        "scale_attn_weights": True,
        "use_cache": True,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
    }


CONFIG_CLASSES: Dict[str, type] = {c.model_type: c for c in (BertConfig, GPT2Config, RobertaConfig)}


# ---- Llama-family decoders (Llama, Mistral, Qwen2), as transformers 5.24 defines their configs.
# RoPE settings live in one dict, `rope_parameters` ({"rope_type", "rope_theta", "factor", ...}); the
# older spellings in config.json (`rope_theta`, `rope_scaling` with "type" or "rope_type") are
# folded into it on load, as transformers does, and are not written back.

DEFAULT_ROPE_THETA = 10_000.0
ROPE_TYPES_WITH_ORIGINAL_LENGTH = ("llama3", "yarn", "longrope")


class LlamaConfig(PretrainedConfig):
    model_type = "llama"
    family_defaults = {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": None,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "use_cache": True,
        "pad_token_id": None,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "rope_parameters": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "head_dim": None,
    }

    def derive_entries(self) -> None:
        values = self._values
        if "head_dim" in values and values["head_dim"] is None:
            values["head_dim"] = values["hidden_size"] // values["num_attention_heads"]
        if values.get("num_key_value_heads") is None:
            values["num_key_value_heads"] = values["num_attention_heads"]
        values["rope_parameters"] = _rope_parameters(values)
        self._given[:] = [key for key in self._given if key in values]


def _rope_parameters(values: Dict[str, Any]) -> Dict[str, Any]:
    """transformers' `convert_rope_params_to_dict` + `standardize_rope_params` for one global dict."""
    legacy_scaling = values.pop("rope_scaling", None)
    theta = values.pop("rope_theta", DEFAULT_ROPE_THETA)
    parameters = dict(legacy_scaling or values.get("rope_parameters") or {})
    if not isinstance(parameters, dict):
        raise ConfigError(f"rope_parameters must be a JSON object, got {parameters!r}")
    parameters.setdefault("rope_theta", theta)
    parameters.setdefault("rope_type", parameters.get("type", "default"))
    if parameters["rope_type"] in ROPE_TYPES_WITH_ORIGINAL_LENGTH:
        parameters.setdefault("original_max_position_embeddings", values["max_position_embeddings"])
    return parameters


class MistralConfig(LlamaConfig):
    model_type = "mistral"
    family_defaults = {
        key: value
        for key, value in {
            **LlamaConfig.family_defaults,
            "intermediate_size": 14336,
            "num_key_value_heads": 8,
            "max_position_embeddings": 4096 * 32,
            "sliding_window": 4096,
        }.items()
        if key not in ("pretraining_tp", "attention_bias", "mlp_bias")
    }


class Qwen2Config(LlamaConfig):
    """Qwen2: q/k/v biases always; sliding windows only with `use_sliding_window`, on the layers
    from `max_window_layers` on (`layer_types`). Its config has no `head_dim` entry."""

    model_type = "qwen2"
    family_defaults = {
        key: value
        for key, value in {
            **LlamaConfig.family_defaults,
            "vocab_size": 151936,
            "intermediate_size": 22016,
            "num_key_value_heads": 32,
            "max_position_embeddings": 32768,
            "use_sliding_window": False,
            "sliding_window": 4096,
            "max_window_layers": 28,
            "layer_types": None,
            "bos_token_id": None,
            "eos_token_id": None,
        }.items()
        if key not in ("pretraining_tp", "attention_bias", "mlp_bias", "head_dim")
    }

    def derive_entries(self) -> None:
        super().derive_entries()
        values = self._values
        if not values["use_sliding_window"]:
            values["sliding_window"] = None
        if values["layer_types"] is None:
            values["layer_types"] = [
                "sliding_attention"
                if values["sliding_window"] is not None and i >= values["max_window_layers"]
                else "full_attention"
                for i in range(values["num_hidden_layers"])
            ]


CONFIG_CLASSES.update({c.model_type: c for c in (LlamaConfig, MistralConfig, Qwen2Config)})


def read_config_json(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The JSON object in a config file, or a ConfigError naming the file and the problem."""
    try:
        with open(path, encoding="utf-8") as file:
            entries = json.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}: expected a JSON object, found {type(entries).__name__}")
    return entries


def load_config(path: Union[str, os.PathLike], model_type: Optional[str] = None) -> PretrainedConfig:
    """The config in `path` (a config.json or a directory holding one), as its family's class."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    entries = read_config_json(path)
    model_type = model_type or entries.get("model_type")
    return CONFIG_CLASSES.get(model_type, PretrainedConfig).from_dict(entries)
