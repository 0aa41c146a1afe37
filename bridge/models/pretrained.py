"""The base class of every model: building from a config, loading and saving pretrained weights.

Loading goes file -> numpy arrays (memory-mapped where the format allows) -> the model's parameters,
one tensor at a time, into a model first built on PyTorch's "meta" device (no memory, no random
initialisation). A tensor whose dtype and device already match is adopted without a copy, so a
checkpoint never sits in memory twice. Checkpoint keys are reconciled with the model's as
transformers does: the base-model prefix (`bert.`, `transformer.`, `roberta.`) is added or removed,
legacy names are translated, tied weights may be absent. What is left over is reported in two
warnings, or raised when `strict=True`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from bridge import checkpoint_keys
from bridge.config import PretrainedConfig, load_config, validate_config
from bridge.errors import BridgeError, ConfigError
from bridge.models import checkpoint
from bridge.spec import parse_spec  # "org/name@rev:model" -> ("org/name", "rev")
from bridge.user_warnings import warn_user

Tensor = torch.Tensor
Source = Union[str, os.PathLike]

class CheckpointMismatchError(BridgeError):
    """A checkpoint that does not fit the model: a wrong shape, or (with strict=True) keys that differ."""


class UnusedWeightsWarning(UserWarning):
    """The checkpoint holds weights the model does not use; they were ignored."""


class MissingWeightsWarning(UserWarning):
    """The model needs weights the checkpoint lacks; they were newly initialised."""


class PretrainedModel(nn.Module):
    """A model of one family, built from its config; `from_pretrained` / `save_pretrained`.

    Subclasses set `config_class`, `base_model_prefix` (the attribute under which a head keeps its
    base model), `tied_weights` ({tied parameter: parameter it shares}, applied when the config's
    `tie_word_embeddings` is true) and `ignored_checkpoint_keys` (regular expressions for keys old
    checkpoints carry that mean nothing today, dropped silently). Each subclass's `__init__` ends
    with `self.post_init()`.
    """

    config_class: ClassVar[type] = PretrainedConfig
    base_model_prefix: ClassVar[str] = ""
    tied_weights: ClassVar[Dict[str, str]] = {}
    ignored_checkpoint_keys: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.check_config(config)
        validate_config(config)  # sizes, types and ranges, before a single layer is built
        self.config = config

    @classmethod
    def check_config(cls, config: PretrainedConfig) -> None:
        """ConfigError unless `config` is of this model's family (a GPT-2 config cannot build BERT)."""
        if getattr(config, "model_type", None) != cls.config_class.model_type:
            raise ConfigError(
                f"{cls.__name__} needs a {cls.config_class.model_type!r} config, "
                f"got model_type {getattr(config, 'model_type', None)!r}"
            )

    @property
    def base_model(self) -> nn.Module:
        """The bare model inside a head (stored as `self.<base_model_prefix>`), or the model itself."""
        return getattr(self, self.base_model_prefix, self)

    def set_base_model(self, model: nn.Module) -> None:
        setattr(self, self.base_model_prefix, model)

    def setting(self, value: Optional[bool], name: str) -> bool:
        """A forward flag (`use_cache`, `output_attentions`, ...): as given, else the config's."""
        return getattr(self.config, name) if value is None else value

    # ----- initialisation and tying -------------------------------------------------------------

    def post_init(self) -> None:
        """Initialise every parameter as transformers does, then tie the tied ones."""
        self.initialize_parameters()
        self.tie_weights()

    def initialize_parameters(self, names: Optional[set] = None) -> None:
        """Fill the parameters named in `names` (all when None) with their initial values."""
        if names is not None and not names:  # a checkpoint that lacks nothing
            return
        with torch.no_grad():
            for module_name, module in self.named_modules():
                for name, parameter in module.named_parameters(recurse=False):
                    full_name = f"{module_name}.{name}" if module_name else name
                    if parameter.is_meta:  # a model being loaded: no values to fill yet
                        continue
                    if names is None or full_name in names:
                        self.initialize_parameter(full_name, module, parameter)

    def initialize_parameter(self, full_name: str, module: nn.Module, parameter: Tensor) -> None:
        """transformers' `_init_weights`: N(0, initializer_range) weights, zero biases, unit norms."""
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(parameter) if full_name.endswith("weight") else nn.init.zeros_(parameter)
        elif full_name.endswith("bias"):
            nn.init.zeros_(parameter)
        else:
            nn.init.normal_(parameter, mean=0.0, std=self.config.initializer_range)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                parameter[module.padding_idx].zero_()

    def active_tied_weights(self) -> Dict[str, str]:
        """{tied parameter: its source} when the config ties word embeddings, else {}."""
        return dict(self.tied_weights) if self.config.tie_word_embeddings else {}

    def tie_weights(self) -> None:
        """Make every tied parameter the very same Parameter object as its source."""
        for target, source in self.active_tied_weights().items():
            module_name, _, name = target.rpartition(".")
            setattr(self.get_submodule(module_name), name, self.get_parameter(source))

    # ----- loading ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        source: Source,
        *,
        revision: Optional[str] = None,
        dtype: Union[torch.dtype, str, None] = None,
        device: Union[str, torch.device, None] = None,
        strict: bool = False,
        torch_dtype: Union[torch.dtype, str, None] = None,
    ) -> "PretrainedModel":
        """Load a pretrained model from a local directory, a Hub repo id or an hgf spec.

        Files come through `bridge.hub.fetch_file`: config.json, then the first weights found of
        model.safetensors, its sharded index, pytorch_model.bin, its sharded index. The model keeps
        the checkpoint's dtype unless `dtype` is given (`torch_dtype`, transformers 4's name, is an
        alias), lives on `device` (default CPU), and is returned in eval mode.
        """
        spec = parse_spec(str(source))
        source, revision = spec.source, revision or spec.revision
        config_file = str(checkpoint.fetch(source, "config.json", revision=revision))
        config = load_config(config_file)
        try:
            cls.check_config(config)
        except ConfigError as error:
            raise ConfigError(f"{config_file}: {error}") from None
        state_dict = checkpoint.read_weights(source, revision=revision)
        # Before building anything: a config whose sizes the checkpoint cannot justify is refused.
        parameters = sum(int(np.prod(value.shape)) for value in state_dict.values())
        validate_config(config, config_file, checkpoint_parameters=parameters)
        try:
            return cls.from_state_dict(
                config, state_dict, dtype=dtype, torch_dtype=torch_dtype, device=device, strict=strict
            )
        except ConfigError as error:  # an entry only the model's layers check (an activation name)
            raise ConfigError(f"{config_file}: {error}") from None
        except CheckpointMismatchError as error:  # name the model directory or repo
            raise CheckpointMismatchError(f"{source}: {error}") from None

    @classmethod
    def from_state_dict(
        cls,
        config: PretrainedConfig,
        state_dict: Mapping[str, Union[Tensor, np.ndarray]],
        *,
        dtype: Union[torch.dtype, str, None] = None,
        device: Union[str, torch.device, None] = None,
        strict: bool = False,
        torch_dtype: Union[torch.dtype, str, None] = None,
    ) -> "PretrainedModel":
        """Build the model for `config` and fill it from `state_dict` (torch tensors or numpy arrays).

        This is `from_pretrained` minus the files: the same key reconciliation, warnings and dtype
        rules. Arrays are adopted without a copy where dtype and device allow.
        """
        device = torch.device(device or "cpu")
        requested_dtype = _resolve_dtype(_dtype_argument(dtype, torch_dtype))
        with torch.device("meta"):
            model = cls(config)
        expected = model._expected_keys()
        mapping, unused = model._match_checkpoint_keys(list(state_dict), expected)
        missing = [key for key in expected if key not in mapping]
        if strict and (missing or unused):
            raise CheckpointMismatchError(_mismatch_message(cls.__name__, unused, missing))
        used = [state_dict[file_key] for file_key in mapping.values()]
        dtype = requested_dtype or _checkpoint_dtype(used) or torch.get_default_dtype()

        for model_key, file_key in mapping.items():
            tensor = _to_tensor(state_dict[file_key], file_key)
            parameter = model.get_parameter(model_key)
            if tensor.shape != parameter.shape:
                raise CheckpointMismatchError(
                    f"{file_key}: checkpoint shape {tuple(tensor.shape)} does not fit "
                    f"{cls.__name__}.{model_key} of shape {tuple(parameter.shape)}"
                )
            if tensor.is_floating_point():
                tensor = tensor.to(dtype=dtype)
            elif parameter.is_floating_point():
                raise CheckpointMismatchError(
                    f"{file_key}: checkpoint dtype {str(tensor.dtype).replace('torch.', '')} cannot be loaded into "
                    f"{cls.__name__}.{model_key}, which holds floating-point numbers; convert the checkpoint first"
                )
            model._set_parameter(model_key, tensor.to(device=device))
        for key in missing:
            placeholder = model.get_parameter(key)
            model._set_parameter(key, torch.empty(placeholder.shape, dtype=dtype, device=device))
        model.initialize_parameters(set(missing))
        model.tie_weights()

        if unused:
            warn_user(
                f"{cls.__name__}: ignored {len(unused)} weights of the checkpoint that the model does not use: "
                + ", ".join(unused),
                UnusedWeightsWarning,
            )
        if missing:
            warn_user(
                f"{cls.__name__}: newly initialised {len(missing)} weights the checkpoint lacks: " + ", ".join(missing),
                MissingWeightsWarning,
            )
        return model.eval()

    def _expected_keys(self) -> List[str]:
        """The parameter names a checkpoint should provide (tied copies excluded)."""
        tied = self.active_tied_weights()
        return [name for name in self.state_dict(keep_vars=True) if name not in tied]

    def _match_checkpoint_keys(
        self, file_keys: List[str], expected: List[str]
    ) -> Tuple[Dict[str, str], List[str]]:
        """({model key: checkpoint key}, [checkpoint keys the model does not use]) for the model's
        `expected` keys, by the rule of bridge.checkpoint_keys (transformers' own)."""
        match = checkpoint_keys.match_keys(
            file_keys,
            expected,
            self.base_model_prefix,
            tied=self.active_tied_weights(),
            ignored=self.ignored_checkpoint_keys,
        )
        return match.mapping, match.unused

    def _set_parameter(self, name: str, tensor: Tensor) -> None:
        module_name, _, leaf = name.rpartition(".")
        module = self.get_submodule(module_name)
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=tensor.is_floating_point())

    # ----- saving -------------------------------------------------------------------------------

    def save_pretrained(
        self, directory: Source, *, safe_serialization: bool = True, max_shard_size: Union[int, str] = "5GB"
    ) -> None:
        """Write config.json and the weights: model.safetensors, or pytorch_model.bin (zip pickle).

        Past `max_shard_size` the weights are sharded with an index, as transformers does. Tied
        copies are not written (transformers leaves them out too and re-ties on load).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tied = self.active_tied_weights()
        arrays = {
            name: _to_array(tensor) for name, tensor in self.state_dict().items() if name not in tied
        }
        checkpoint.write_weights(
            arrays, directory, safe_serialization=safe_serialization, max_shard_size=max_shard_size
        )
        self.config.architectures = [type(self).__name__]
        self.config.dtype = str(self.dtype).replace("torch.", "")
        self.config.save_pretrained(directory)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def _mismatch_message(model: str, unused: List[str], missing: List[str]) -> str:
    parts = []
    if unused:
        parts.append(f"unused checkpoint weights: {', '.join(unused)}")
    if missing:
        parts.append(f"weights missing from the checkpoint: {', '.join(missing)}")
    return f"{model} does not match the checkpoint (strict=True): " + "; ".join(parts)


def _dtype_argument(dtype: Union[torch.dtype, str, None], torch_dtype: Union[torch.dtype, str, None]) -> Any:
    """The dtype asked for, as `dtype` (transformers 5's keyword) or `torch_dtype` (its alias)."""
    if torch_dtype is None:
        return dtype
    if dtype is not None:
        raise TypeError("pass the dtype once, as `dtype` (`torch_dtype` is its older name)")
    return torch_dtype


def _resolve_dtype(requested: Union[torch.dtype, str, None]) -> Optional[torch.dtype]:
    """A torch dtype from a dtype, its name ("bfloat16", "torch.float16") or "auto"/None (the checkpoint's)."""
    if requested is None or isinstance(requested, torch.dtype):
        return requested
    name = str(requested).replace("torch.", "")
    if name == "auto":
        return None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype {requested!r} is not a floating-point torch dtype")
    return dtype


def _checkpoint_dtype(values: List[Any]) -> Optional[torch.dtype]:
    """The dtype of the first floating-point tensor the model takes from the checkpoint."""
    for value in values:
        if isinstance(value, Tensor):
            if value.is_floating_point():
                return value.dtype
        else:
            dtype = _TORCH_DTYPES.get(np.dtype(value.dtype).name)
            if dtype is not None and dtype.is_floating_point:
                return dtype
    return None


# numpy dtype name -> torch dtype; bf16 and fp8 are ml_dtypes types that torch cannot read directly.
_TORCH_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_SAME_WIDTH_INTEGER = {1: np.uint8, 2: np.int16}


def _to_tensor(value: Union[Tensor, np.ndarray], name: str) -> Tensor:
    """A torch view of a checkpoint array (no copy unless the array is read-only)."""
    if isinstance(value, Tensor):
        return value
    dtype = _TORCH_DTYPES.get(np.dtype(value.dtype).name)
    if dtype is None:
        raise CheckpointMismatchError(f"{name}: unsupported dtype {value.dtype}")
    if not value.flags.writeable:  # torch cannot safely share read-only memory
        value = value.copy()
    try:
        if value.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
            raw = value.view(_SAME_WIDTH_INTEGER[value.dtype.itemsize])
            return torch.from_numpy(raw).view(dtype)
        return torch.from_numpy(value)
    except (TypeError, ValueError, RuntimeError) as error:  # e.g. strides torch cannot share
        raise CheckpointMismatchError(f"{name}: cannot be used as a tensor ({error})") from None


def _to_array(tensor: Tensor) -> np.ndarray:
    """A numpy view of a tensor for writing (bf16 as ml_dtypes.bfloat16)."""
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()
