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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple, Union

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
MAX_DIMENSION = 2**31 - 1  # torch sizes beyond this are not a model anyone can hold
MAX_LABELS = 2**20  # extreme classification stays below a million labels


@dataclass(frozen=True)
class Rule:
    """What one config entry may hold: its type, an optional range, whether null is allowed."""

    kind: str  # "int", "number", "bool", "text", "token ids"
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    above_minimum: bool = False  # strictly greater than `minimum`
    nullable: bool = False

    def problem(self, value: Any) -> Optional[str]:
        """Why `value` breaks the rule, or None."""
        if value is None:
            return None if self.nullable else "must be given (not null)"
        if self.kind == "token ids" and isinstance(value, list):
            return next(filter(None, (Rule("int", minimum=0).problem(item) for item in value)), None)
        expected = {"int": (int,), "token ids": (int,), "number": (int, float), "bool": (bool,), "text": (str,)}
        if not isinstance(value, expected[self.kind]) or (self.kind != "bool" and isinstance(value, bool)):
            return f"must be {_KIND_WORDS[self.kind]}, not {type(value).__name__}"
        if self.kind in ("int", "number", "token ids"):
            if value != value or value in (float("inf"), float("-inf")):
                return "must be a finite number"
            low = self.minimum
            if low is not None and (value <= low if self.above_minimum else value < low):
                return f"must be {'greater than' if self.above_minimum else 'at least'} {_number(low)}"
            if self.maximum is not None and value > self.maximum:
                return f"must be at most {_number(self.maximum)}"
        return None


def _number(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


_KIND_WORDS = {"int": "an integer", "number": "a number", "bool": "true or false", "text": "a string", "token ids": "a token id"}
COUNT = Rule("int", minimum=1, maximum=MAX_DIMENSION)  # sizes, layers, heads
OPTIONAL_COUNT = Rule("int", minimum=1, maximum=MAX_DIMENSION, nullable=True)
PROBABILITY = Rule("number", minimum=0, maximum=1)
OPTIONAL_PROBABILITY = Rule("number", minimum=0, maximum=1, nullable=True)
EPSILON = Rule("number", minimum=0, above_minimum=True, maximum=1)
SCALE = Rule("number", minimum=0)
FLAG = Rule("bool")
NAME = Rule("text")
OPTIONAL_NAME = Rule("text", nullable=True)
TOKEN_ID = Rule("token ids", minimum=0, maximum=MAX_DIMENSION, nullable=True)
# Entries every family's models read, whatever the family.
COMMON_RULES: Dict[str, Rule] = {
    # The label maps are built when the config is read: more labels than this is not a config.
    "num_labels": Rule("int", minimum=1, maximum=MAX_LABELS),
    "pad_token_id": TOKEN_ID,
    "bos_token_id": TOKEN_ID,
    "eos_token_id": TOKEN_ID,
    "tie_word_embeddings": FLAG,
    "is_decoder": FLAG,
    "add_cross_attention": FLAG,
    "use_cache": FLAG,
    "output_hidden_states": FLAG,
    "output_attentions": FLAG,
    "return_dict": FLAG,
}
# Above this many parameters beyond what the checkpoint holds, a config does not describe the
# checkpoint (a head's newly initialised classifier stays far below it).
PARAMETER_SLACK = 2**24


def _numbered_labels(count: int) -> Dict[int, str]:
    """The id2label transformers makes for `num_labels=count`: {0: "LABEL_0", ...}."""
    return {i: f"LABEL_{i}" for i in range(count)}


class PretrainedConfig:
    """A config: attribute access to every entry, defaults from the family, JSON in and out."""

    model_type: ClassVar[str] = ""
    family_defaults: ClassVar[Dict[str, Any]] = {}
    # transformers' aliases: GPT-2 calls hidden_size `n_embd`, and both names work.
    attribute_map: ClassVar[Dict[str, str]] = {}
    # What `validate_config` checks, per family: {entry: Rule} (entries as config.json names them),
    # (divisor, multiple) pairs that must divide evenly, and {entry: parameters it implies} (lower
    # bounds, as Python ints, so absurd sizes are measured without building anything).
    field_rules: ClassVar[Dict[str, Rule]] = {}
    divisible: ClassVar[Tuple[Tuple[str, str], ...]] = ()
    size_terms: ClassVar[Dict[str, Callable[["PretrainedConfig"], int]]] = {}

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
    field_rules = {
        "vocab_size": COUNT,
        "hidden_size": COUNT,
        "num_hidden_layers": COUNT,
        "num_attention_heads": COUNT,
        "intermediate_size": COUNT,
        "hidden_act": NAME,
        "hidden_dropout_prob": PROBABILITY,
        "attention_probs_dropout_prob": PROBABILITY,
        "classifier_dropout": OPTIONAL_PROBABILITY,
        "max_position_embeddings": COUNT,
        "type_vocab_size": COUNT,
        "initializer_range": SCALE,
        "layer_norm_eps": EPSILON,
    }
    divisible = (("num_attention_heads", "hidden_size"),)
    size_terms = {
        "vocab_size": lambda c: c.vocab_size * c.hidden_size,
        "max_position_embeddings": lambda c: c.max_position_embeddings * c.hidden_size,
        "type_vocab_size": lambda c: c.type_vocab_size * c.hidden_size,
        "num_hidden_layers": lambda c: c.num_hidden_layers * 4 * c.hidden_size**2,
        "intermediate_size": lambda c: c.num_hidden_layers * 2 * c.hidden_size * c.intermediate_size,
        "hidden_size": lambda c: c.hidden_size**2,
        "num_labels": lambda c: c.num_labels * c.hidden_size,
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
    field_rules = {
        "vocab_size": COUNT,
        "n_positions": COUNT,
        "n_embd": COUNT,
        "n_layer": COUNT,
        "n_head": COUNT,
        "n_inner": OPTIONAL_COUNT,
        "activation_function": NAME,
        "resid_pdrop": PROBABILITY,
        "embd_pdrop": PROBABILITY,
        "attn_pdrop": PROBABILITY,
        "layer_norm_epsilon": EPSILON,
        "initializer_range": SCALE,
        "summary_type": NAME,
        "summary_use_proj": FLAG,
        "summary_activation": OPTIONAL_NAME,
        "summary_proj_to_labels": FLAG,
        "summary_first_dropout": PROBABILITY,
        "scale_attn_weights": FLAG,
        "scale_attn_by_inverse_layer_idx": FLAG,
        "reorder_and_upcast_attn": FLAG,
    }
    divisible = (("n_head", "n_embd"),)
    size_terms = {
        "vocab_size": lambda c: c.vocab_size * c.n_embd,
        "n_positions": lambda c: c.n_positions * c.n_embd,
        "n_layer": lambda c: c.n_layer * 4 * c.n_embd**2,
        "n_inner": lambda c: c.n_layer * 2 * c.n_embd * (c.n_inner or 4 * c.n_embd),
        "n_embd": lambda c: c.n_embd**2,
        "num_labels": lambda c: c.num_labels * c.n_embd,
    }


CONFIG_CLASSES: Dict[str, type] = {c.model_type: c for c in (BertConfig, GPT2Config, RobertaConfig)}


# ---- Llama-family decoders (Llama, Mistral, Qwen2), as transformers 5.24 defines their configs.
# RoPE settings live in one dict, `rope_parameters` ({"rope_type", "rope_theta", "factor", ...}); the
# older spellings in config.json (`rope_theta`, `rope_scaling` with "type" or "rope_type") are
# folded into it on load, as transformers does, and are not written back. Derived entries are
# filled only from entries of the right type: anything else is left for `validate_config` to name.

DEFAULT_ROPE_THETA = 10_000.0
ROPE_TYPES_WITH_ORIGINAL_LENGTH = ("llama3", "yarn", "longrope")
MAX_LAYERS = 2**16  # the deepest released decoders have ~100 layers; per-layer lists stay small
# rope_parameters entries the models read: {name: Rule}.
ROPE_RULES: Dict[str, Rule] = {
    "rope_type": NAME,
    "rope_theta": Rule("number", minimum=0, above_minimum=True),
    "factor": Rule("number", minimum=0, above_minimum=True, nullable=True),
    "original_max_position_embeddings": Rule("int", minimum=1, maximum=MAX_DIMENSION),
    "low_freq_factor": Rule("number", minimum=0, above_minimum=True),
    "high_freq_factor": Rule("number", minimum=0, above_minimum=True),
    "attention_factor": Rule("number", minimum=0, nullable=True),
    "beta_fast": Rule("number", minimum=0, above_minimum=True, nullable=True),
    "beta_slow": Rule("number", minimum=0, above_minimum=True, nullable=True),
    "partial_rotary_factor": Rule("number", minimum=0, above_minimum=True, maximum=1),
}


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


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
    field_rules = {
        "vocab_size": COUNT,
        "hidden_size": COUNT,
        "intermediate_size": COUNT,
        "num_hidden_layers": Rule("int", minimum=1, maximum=MAX_LAYERS),
        "num_attention_heads": COUNT,
        "num_key_value_heads": COUNT,
        "head_dim": COUNT,
        "hidden_act": NAME,
        "max_position_embeddings": COUNT,
        "initializer_range": SCALE,
        "rms_norm_eps": EPSILON,
        "attention_dropout": PROBABILITY,
        "attention_bias": FLAG,
        "mlp_bias": FLAG,
        "sliding_window": OPTIONAL_COUNT,
        "use_sliding_window": FLAG,
        "max_window_layers": Rule("int", minimum=0, maximum=MAX_LAYERS),
    }
    divisible = (("num_attention_heads", "hidden_size"), ("num_key_value_heads", "num_attention_heads"))
    size_terms = {
        "vocab_size": lambda c: c.vocab_size * c.hidden_size,
        "num_hidden_layers": lambda c: c.num_hidden_layers * 2 * c.hidden_size * c.num_attention_heads * _head_dim(c),
        "num_key_value_heads": lambda c: c.num_hidden_layers * 2 * c.hidden_size * c.num_key_value_heads * _head_dim(c),
        "intermediate_size": lambda c: c.num_hidden_layers * 3 * c.hidden_size * c.intermediate_size,
        "hidden_size": lambda c: c.hidden_size,
        "num_labels": lambda c: c.num_labels * c.hidden_size,
    }

    def derive_entries(self) -> None:
        values = self._values
        hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")
        if "head_dim" in values and values["head_dim"] is None and _is_count(hidden) and _is_count(heads):
            values["head_dim"] = hidden // heads
        if values.get("num_key_value_heads") is None:
            values["num_key_value_heads"] = heads
        values["rope_parameters"] = _rope_parameters(values)
        self._given[:] = [key for key in self._given if key in values]


def _head_dim(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _rope_parameters(values: Dict[str, Any]) -> Dict[str, Any]:
    """transformers' `convert_rope_params_to_dict` + `standardize_rope_params` for one global dict;
    ConfigError naming the entry when one is not of the kind the models read."""
    legacy_scaling = values.pop("rope_scaling", None)
    theta = values.pop("rope_theta", DEFAULT_ROPE_THETA)
    given = legacy_scaling or values.get("rope_parameters") or {}
    if not isinstance(given, dict):
        raise ConfigError(f"rope_parameters = {given!r:.80} must be a JSON object")
    parameters = dict(given)
    parameters.setdefault("rope_theta", theta)
    parameters.setdefault("rope_type", parameters.get("type", "default"))
    if parameters["rope_type"] in ROPE_TYPES_WITH_ORIGINAL_LENGTH and _is_count(values.get("max_position_embeddings")):
        parameters.setdefault("original_max_position_embeddings", values["max_position_embeddings"])
    for name, rule in ROPE_RULES.items():
        problem = rule.problem(parameters[name]) if name in parameters else None
        if problem:
            raise ConfigError(f"rope_parameters.{name} = {parameters[name]!r:.80} {problem}")
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
        layers, first_windowed = values["num_hidden_layers"], values["max_window_layers"]
        if values["layer_types"] is None and _is_count(layers) and layers <= MAX_LAYERS and isinstance(first_windowed, int):
            values["layer_types"] = [
                "sliding_attention" if values["sliding_window"] is not None and i >= first_windowed else "full_attention"
                for i in range(layers)
            ]
        types = values["layer_types"]
        if types is None:  # num_hidden_layers is no layer count: validate_config names it
            return
        if not (isinstance(types, list) and all(t in ("full_attention", "sliding_attention") for t in types)):
            raise ConfigError(f"layer_types = {types!r:.80} must list 'full_attention' or 'sliding_attention' per layer")
        if _is_count(layers) and len(types) != layers:
            raise ConfigError(f"layer_types names {len(types)} layers, but num_hidden_layers = {layers}")


CONFIG_CLASSES.update({c.model_type: c for c in (LlamaConfig, MistralConfig, Qwen2Config)})

MAX_CONFIG_BYTES = 16 * 2**20  # the largest real config.json files (label maps) are far smaller


def read_config_json(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The JSON object in a config file, or a ConfigError naming the file and the problem."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes, not a config.json")
    try:
        entries = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config.json") from None
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
    if not isinstance(model_type, (str, type(None))):
        raise ConfigError(f"{path}: model_type = {model_type!r} must be a string")
    _check_labels(entries, str(path))
    try:
        return CONFIG_CLASSES.get(model_type, PretrainedConfig).from_dict(entries)
    except ConfigError as error:  # an entry a family derives others from (Llama's rope_parameters, ...)
        raise ConfigError(f"{path}: {error}") from None


def validate_config(config: PretrainedConfig, source: str = "config", checkpoint_parameters: Optional[int] = None) -> None:
    """ConfigError, naming `source` and the entry, unless every entry the family's models read has
    a usable type and range, and the sizes divide as attention needs. With `checkpoint_parameters`
    (how many numbers the checkpoint on disk holds), also refuse a config whose sizes imply far
    more parameters than that: such a config does not describe the checkpoint, and building it
    would exhaust memory. Called before anything is built; families add entries to their tables."""
    for field, rule in {**COMMON_RULES, **config.field_rules}.items():
        if field not in config and field != "num_labels":
            continue  # the family does not read it
        value = getattr(config, field)
        problem = rule.problem(value)
        if problem:
            raise ConfigError(f"{source}: {field} = {value!r} {problem}")
    for divisor, multiple in config.divisible:
        if getattr(config, multiple) % getattr(config, divisor):
            raise ConfigError(
                f"{source}: {multiple} = {getattr(config, multiple)} is not a multiple of "
                f"{divisor} = {getattr(config, divisor)}"
            )
    if checkpoint_parameters is None or not config.size_terms:
        return
    implied = _implied_parameters(config)
    if implied > 2 * checkpoint_parameters + PARAMETER_SLACK:
        # The culprit: the entry whose setting to 1 would shrink the model the most.
        field = max(config.size_terms, key=lambda name: implied - _implied_parameters(config, name))
        raise ConfigError(
            f"{source}: {field} = {getattr(config, field)!r} makes the model at least {implied:,} parameters, "
            f"but the checkpoint holds {checkpoint_parameters:,}: the config does not describe these weights"
        )


def _implied_parameters(config: PretrainedConfig, set_to_one: Optional[str] = None) -> int:
    """The sum of the family's size terms (a lower bound of its parameter count), with one entry
    replaced by 1 if asked."""

    class View:
        def __getattr__(self, name: str) -> Any:
            return 1 if name == set_to_one else getattr(config, name)

    return sum(term(View()) for term in config.size_terms.values())


def _check_labels(entries: Dict[str, Any], source: str) -> None:
    """The label entries `PretrainedConfig` turns into maps: checked before it does."""
    num_labels = entries.get("num_labels")
    if num_labels is not None:
        problem = COMMON_RULES["num_labels"].problem(num_labels)
        if problem:
            raise ConfigError(f"{source}: num_labels = {num_labels!r} {problem}")
    id2label = entries.get("id2label")
    if id2label is None:
        return
    if not isinstance(id2label, dict) or not all(
        isinstance(key, str) and key.isdigit() and key.isascii() for key in id2label
    ):
        raise ConfigError(f"{source}: id2label = {id2label!r:.80} must map label numbers ('0', '1', ...) to names")
    if num_labels is not None and len(id2label) != num_labels:
        raise ConfigError(f"{source}: num_labels = {num_labels} but id2label names {len(id2label)} labels")
