"""Drive HGFBridge.jl, the Julia side of the bridge, from Python through juliacall.

    import bridge.julia as bj
    jl_model = bj.to_flux("bert-base-cased:formaskedlm", device="cuda")   # a Flux model
    state_dict = bj.from_flux(jl_model)                                   # numpy, torch layout
    bj.save_pretrained_from_flux(jl_model, "out-dir")                     # from_pretrained-ready

Importing this module is cheap and works without Julia: juliacall (which, with no Julia found,
would make juliapkg download one) is imported on the first call only. That first call checks that
a Julia executable exists, sets juliacall's signal and thread options, and imports juliacall,
which resolves `bridge/juliapkg.json` (HGFBridge developed from this checkout, plus Flux, CUDA,
PythonCall, ...). Import juliacall before torch: call `julia_module()` at the top of a script that
uses both (the other order can corrupt the heap); a warning says when torch came first.
"""

from __future__ import annotations

import os
import shutil
import ssl
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from bridge import flux_layout
from bridge.config import CONFIG_CLASSES, PretrainedConfig
from bridge.errors import BridgeError

JULIA_VERSION = "1.12"  # HGFBridge's entryfile needs it (Project.toml's compat)
JULIAPKG_JSON = Path(__file__).with_name("juliapkg.json")
# juliacall's options, set before its first import unless the user set them.
JULIACALL_DEFAULTS = {"PYTHON_JULIACALL_HANDLE_SIGNALS": "yes", "PYTHON_JULIACALL_THREADS": "auto"}
# The environment variables naming a Julia executable for juliacall / juliapkg.
JULIA_EXECUTABLE_VARIABLES = ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE")

_MODULE: Any = None


class JuliaNotAvailableError(BridgeError):
    """No usable Julia: the message says how to install one and what juliacall will then do."""


class TorchImportedFirstWarning(UserWarning):
    """torch was imported before juliacall, an order that can corrupt the heap."""


def find_julia() -> Optional[str]:
    """A Julia executable juliacall would use without downloading one, or None."""
    for variable in JULIA_EXECUTABLE_VARIABLES:
        path = os.environ.get(variable)
        if path and Path(path).is_file():
            return path
    return shutil.which("julia")


def _require_julia() -> str:
    julia = find_julia()
    if julia is None:
        raise JuliaNotAvailableError(
            f"no Julia executable found (looked for `julia` on PATH and ${' / $'.join(JULIA_EXECUTABLE_VARIABLES)}). "
            f"Install Julia {JULIA_VERSION} with juliaup (`curl -fsSL https://install.julialang.org | sh`, then "
            f"`juliaup add {JULIA_VERSION}`) or from https://julialang.org/downloads/, and put `julia` on PATH. "
            f"On first use juliacall then resolves {JULIAPKG_JSON}: it creates a Julia project, develops "
            "HGFBridge from this checkout and installs Flux, CUDA, cuDNN, PythonCall and their dependencies "
            "(a download of a few GB, once; PYTHON_JULIAPKG_OFFLINE=yes forbids it)."
        )
    too_old = _openssl_julia_limit()
    if too_old is not None:
        raise JuliaNotAvailableError(
            f"this Python links {ssl.OPENSSL_VERSION}, so juliapkg "
            f"allows only Julia {too_old}, but HGFBridge needs Julia {JULIA_VERSION} (which needs OpenSSL >= 3.5). "
            "Use a Python built against OpenSSL 3.5 or newer, or start Julia and use HGFBridge from there."
        )
    return julia


def _openssl_julia_limit() -> Optional[str]:
    """The Julia versions juliapkg allows with this Python's OpenSSL, when that excludes ours."""
    try:
        from juliapkg.deps import openssl_compat  # juliapkg (not juliacall): no Julia is started
    except ImportError:
        return None
    return openssl_compat()[1]  # e.g. "1 - 1.11" below OpenSSL 3.5, else None


def prepare_juliacall_environment() -> None:
    """Set juliacall's signal and thread options (unless set) and warn if torch is already imported."""
    for variable, value in JULIACALL_DEFAULTS.items():
        os.environ.setdefault(variable, value)
    if "torch" in sys.modules and "juliacall" not in sys.modules:
        warnings.warn(
            "torch was imported before juliacall; the reverse order is the safe one. Call "
            "bridge.julia.julia_module() before importing torch.",
            TorchImportedFirstWarning,
            stacklevel=3,
        )


def julia_module() -> Any:
    """The Julia module HGFBridge (juliacall's view of it), starting Julia on first use."""
    global _MODULE
    if _MODULE is None:
        _require_julia()
        prepare_juliacall_environment()
        from juliacall import Main  # noqa: PLC0415 (imported only once Julia is known to exist)

        Main.seval("using HGFBridge")
        _MODULE = Main.HGFBridge
    return _MODULE


def to_flux(model_or_spec: Any, device: str = "cpu") -> Any:
    """A Flux model (a juliacall value) from an hgf spec, a local directory or a PyTorch model.

    `"<repo>[@rev]:<task>"` or `"<dir>:<task>"` is loaded by Julia (through this package's Hub,
    store and checkpoint readers); a PyTorch model (ours or transformers') has its weights handed
    over without touching disk. `device` is "cpu" or "cuda" (which needs a functional GPU).
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    hgf_bridge = julia_module()
    from juliacall import Main

    if isinstance(model_or_spec, (str, os.PathLike)):
        source, revision, task = _spec_source(str(model_or_spec))
        jl_model = hgf_bridge.load_model(source, Main.Symbol(task), revision=revision)
    else:
        config, task = torch_model_config_and_task(model_or_spec)
        weights = flux_layout.flux_weights(state_dict_numpy(model_or_spec), config, task)
        jl_model = hgf_bridge.model_from_weights(config, Main.Symbol(task), weights)
    return hgf_bridge.to_device(jl_model, Main.Symbol(device))


def from_flux(jl_model: Any) -> Dict[str, np.ndarray]:
    """The state dict (numpy arrays, torch layout, tied keys left out) of a Flux model."""
    config, task, arrays = _flux_parts(jl_model)
    return flux_layout.state_dict_from_flux(arrays, config, task)


def save_pretrained_from_flux(
    jl_model: Any,
    directory: Union[str, os.PathLike],
    config: Optional[PretrainedConfig] = None,
    *,
    format: str = "safetensors",
) -> Path:
    """Write config.json and weights that `from_pretrained(directory)` loads (ours or transformers').

    `config` defaults to the model's own; `format` is "safetensors" or "bin".
    """
    own_config, task, arrays = _flux_parts(jl_model)
    return flux_layout.save_from_flux(directory, config or own_config, task, arrays, format=format)


def _flux_parts(jl_model: Any) -> Tuple[PretrainedConfig, str, Any]:
    hgf_bridge = julia_module()
    from juliacall import Main

    task = str(Main.string(hgf_bridge.model_task(jl_model)))
    return jl_model.config.py, task, hgf_bridge.flux_arrays(jl_model)


def _spec_source(spec: str) -> Tuple[str, Optional[str], str]:
    """(source, revision, task) of an hgf spec or a bare directory / repo id (task "model")."""
    from bridge.hgf import MODEL_ITEM, parse_spec

    parsed = parse_spec(spec)
    if parsed.item in ("config", "tokenizer"):
        raise flux_layout.FluxLayoutError(f"{spec!r} names a {parsed.item}, not a model")
    return parsed.source, parsed.revision, parsed.item or MODEL_ITEM


def torch_model_config_and_task(model: Any) -> Tuple[PretrainedConfig, str]:
    """Our config class and the task name of a PyTorch model (ours or transformers')."""
    tasks = {name: key for key, name in flux_layout.ARCHITECTURES.items()}
    class_name = type(model).__name__
    if class_name not in tasks:
        raise flux_layout.FluxLayoutError(
            f"{class_name} has no Flux counterpart; expected one of {', '.join(sorted(tasks))}"
        )
    family, task = tasks[class_name]
    return CONFIG_CLASSES[family].from_dict(model.config.to_dict()), task


def state_dict_numpy(model: Any) -> Dict[str, np.ndarray]:
    """A PyTorch model's state dict as CPU numpy arrays (bf16 as ml_dtypes.bfloat16)."""
    return {key: _tensor_to_numpy(tensor) for key, tensor in model.state_dict().items()}


def _tensor_to_numpy(tensor: Any) -> np.ndarray:
    """A (CPU or GPU) torch tensor as a CPU numpy array; bf16 as ml_dtypes.bfloat16."""
    import ml_dtypes
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()
