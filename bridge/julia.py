"""Drive HGFBridge.jl, the Julia side of the bridge, from Python through juliacall.

    import bridge.julia as bj
    jl_model = bj.to_flux("bert-base-cased:formaskedlm", device="cuda")   # a Flux model
    state_dict = bj.from_flux(jl_model)                                   # numpy, torch layout
    bj.save_pretrained_from_flux(jl_model, "out-dir")                     # from_pretrained-ready

Needs the `julia` extra (`pip install "hgf-bridge[julia]"`: juliacall and juliapkg) and a Julia
this package allows. Importing this module is cheap and works without either: juliacall (which,
with no Julia found, would make juliapkg download one) is imported on the first call only. That
first call checks juliacall, a Julia executable and its version, and that juliapkg knows where
HGFBridge.jl is, then sets juliacall's signal and thread options and imports juliacall.

Where juliapkg finds HGFBridge. HGFBridge.jl is not in Julia's General registry; juliapkg collects
every `juliapkg.json` it finds next to importable packages and `Pkg.develop`s each `"dev"` path.
An editable install (`pip install -e ".[julia]"` in a checkout) finds `bridge/juliapkg.json` in the
checkout, whose path names the checkout's `julia/` folder. A wheel carries no juliapkg.json (a dev
path inside site-packages would point nowhere); there, tell juliapkg where a checkout's `julia/`
folder is, once per environment:

    python -c "import juliapkg; juliapkg.add('HGFBridge', '8cb98c0f-e9fe-4df6-9aad-352d04889e54', dev=True, path='/abs/path/hgf-bridge/julia')"

or set PYTHON_JULIAPKG_PROJECT to a Julia project in which HGFBridge is developed. Import
juliacall before torch: call `julia_module()` at the top of a script that uses both (the other
order can corrupt the heap); a warning says when torch came first.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import ssl
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from bridge import flux_layout
from bridge.config import CONFIG_CLASSES, PretrainedConfig
from bridge.errors import BridgeError
from bridge.user_warnings import warn_user

JULIA_COMPAT = "1.10"  # julia/Project.toml's [compat] julia: 1.10 LTS and every later 1.x
HGFBRIDGE_UUID = "8cb98c0f-e9fe-4df6-9aad-352d04889e54"
JULIAPKG_JSON = Path(__file__).with_name("juliapkg.json")  # in a source checkout only, never in a wheel
INSTALL_EXTRA = 'pip install "hgf-bridge[julia]"'
# juliacall's options, set before its first import unless the user set them.
JULIACALL_DEFAULTS = {"PYTHON_JULIACALL_HANDLE_SIGNALS": "yes", "PYTHON_JULIACALL_THREADS": "auto"}
# The environment variables naming a Julia executable for juliacall / juliapkg.
JULIA_EXECUTABLE_VARIABLES = ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE")
# Julia packages to_flux(device="cuda") loads; HGFBridge itself does not depend on them.
CUDA_PACKAGES = {"CUDA": ("052768ef-5323-5732-b1bb-66c8b64840ba", "5, 6"), "cuDNN": ("02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd", "1, 6")}

_MODULE: Any = None


class JuliaNotAvailableError(BridgeError):
    """No usable Julia, juliacall or HGFBridge: the message says what to install or set."""


class TorchImportedFirstWarning(UserWarning):
    """torch was imported before juliacall, an order that can corrupt the heap."""


def _require_juliacall() -> None:
    if importlib.util.find_spec("juliacall") is None or importlib.util.find_spec("juliapkg") is None:
        raise JuliaNotAvailableError(
            f"bridge.julia needs juliacall, which is an optional dependency: {INSTALL_EXTRA} "
            "(juliacall and juliapkg; no Julia is downloaded at install time)."
        )


def julia_requirements() -> Tuple[Any, Dict[str, Any]]:
    """What juliapkg will ask of Julia here: the allowed Julia versions (a juliapkg Compat) and the
    packages by name, merged from every juliapkg.json it finds (ours, juliacall's, ...) and from
    this Python's OpenSSL, exactly as juliapkg itself merges them."""
    _require_juliacall()
    from juliapkg import deps  # juliapkg (not juliacall): no Julia is started

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # juliapkg prints each file it reads
            compat, packages = deps.find_requirements()
    except Exception as error:  # juliapkg raises bare Exceptions for conflicting juliapkg.json files
        raise JuliaNotAvailableError(f"juliapkg cannot merge the juliapkg.json files it found: {error}") from None
    return compat, {package.name: package for package in packages}


def _julia_candidates() -> List[str]:
    """Julia executables juliacall would use without downloading one, in its order of preference."""
    candidates = [os.environ[v] for v in JULIA_EXECUTABLE_VARIABLES if os.environ.get(v) and Path(os.environ[v]).is_file()]
    on_path = shutil.which("julia")
    return candidates + ([on_path] if on_path and on_path not in candidates else [])


def find_julia() -> Optional[str]:
    """A Julia executable juliacall would use without downloading one, whose version juliapkg
    allows here (HGFBridge's compat, juliacall's, this Python's OpenSSL), or None. Needs the
    `julia` extra (juliapkg decides the compat); JuliaNotAvailableError without it."""
    from juliapkg.find_julia import julia_version

    compat, _ = julia_requirements()
    return next((exe for exe in _julia_candidates() if julia_version(exe) in compat), None)


def _require_julia() -> str:
    compat, packages = julia_requirements()
    julia = find_julia()
    if julia is None:
        from juliapkg.find_julia import julia_version

        found = [f"Julia {julia_version(exe) or '(unknown version)'} at {exe}" for exe in _julia_candidates()]
        openssl_limit = _openssl_julia_limit()
        why = (
            f" This Python links {ssl.OPENSSL_VERSION}, so juliapkg allows only Julia {openssl_limit} "
            "(Julia 1.12 needs OpenSSL >= 3.5)."
            if openssl_limit
            else ""
        )
        looked = f"looked for `julia` on PATH and ${' / $'.join(JULIA_EXECUTABLE_VARIABLES)}"
        raise JuliaNotAvailableError(
            (f"found {', '.join(found)}, but juliapkg allows Julia {compat} here." if found else f"no Julia executable found ({looked}).")
            + f"{why} HGFBridge needs Julia {JULIA_COMPAT} or newer (the 1.10 LTS works). Install one with juliaup "
            f"(`curl -fsSL https://install.julialang.org | sh`, then `juliaup add {JULIA_COMPAT}`) or from "
            "https://julialang.org/downloads/, and put `julia` on PATH or name it in $PYTHON_JULIACALL_EXE. "
            f"On first use juliacall then resolves the juliapkg.json files ({JULIAPKG_JSON.name} of a checkout): it "
            "creates a Julia project, develops HGFBridge and installs Flux, PythonCall and their dependencies "
            "(a download of a few hundred MB, once; PYTHON_JULIAPKG_OFFLINE=yes forbids it)."
        )
    _require_hgfbridge(packages)
    return julia


def _require_hgfbridge(packages: Dict[str, Any]) -> None:
    """juliapkg must know where HGFBridge.jl is: it is not in Julia's General registry."""
    if os.environ.get("PYTHON_JULIAPKG_PROJECT"):
        return  # the user's own Julia project, where HGFBridge is developed
    how = (
        "Install hgf-bridge editable from a checkout (`pip install -e \".[julia]\"`: its bridge/juliapkg.json names "
        "the checkout's julia/ folder), or tell juliapkg where a checkout's julia/ folder is, once per environment: "
        f"python -c \"import juliapkg; juliapkg.add('HGFBridge', '{HGFBRIDGE_UUID}', dev=True, "
        "path='/abs/path/hgf-bridge/julia')\", or set PYTHON_JULIAPKG_PROJECT to a Julia project where HGFBridge "
        "is developed (`julia --project=DIR -e 'using Pkg; Pkg.develop(path=\"/abs/path/hgf-bridge/julia\")'`)."
    )
    package = packages.get("HGFBridge")
    if package is None:
        raise JuliaNotAvailableError(
            "juliapkg does not know where HGFBridge.jl is: no juliapkg.json it reads declares it (this hgf-bridge "
            f"is not an editable install, and HGFBridge is not in Julia's General registry). {how}"
        )
    project = Path(package.path or "") / "Project.toml"
    if not package.dev or not project.is_file() or f'uuid = "{HGFBRIDGE_UUID}"' not in project.read_text():
        raise JuliaNotAvailableError(
            f"juliapkg's HGFBridge entry (dev={package.dev}, path={package.path!r}) does not name a folder holding "
            f"HGFBridge's Project.toml. {how}"
        )


def _openssl_julia_limit() -> Optional[str]:
    """The Julia versions juliapkg allows with this Python's OpenSSL, when that excludes some."""
    from juliapkg.deps import openssl_compat

    return openssl_compat()[1]  # e.g. "1 - 1.11" below OpenSSL 3.5, else None


def prepare_juliacall_environment() -> None:
    """Set juliacall's signal and thread options (unless set) and warn if torch is already imported."""
    for variable, value in JULIACALL_DEFAULTS.items():
        os.environ.setdefault(variable, value)
    if "torch" in sys.modules and "juliacall" not in sys.modules:
        warn_user(
            "torch was imported before juliacall; the reverse order is the safe one. Call "
            "bridge.julia.julia_module() before importing torch.",
            TorchImportedFirstWarning,
        )


def julia_module() -> Any:
    """The Julia module HGFBridge (juliacall's view of it), starting Julia on first use."""
    global _MODULE
    if _MODULE is None:
        _require_juliacall()
        _require_julia()
        prepare_juliacall_environment()
        from juliacall import Main  # noqa: PLC0415 (imported only once Julia is known to exist)

        Main.seval("using HGFBridge")
        _MODULE = Main.HGFBridge
    return _MODULE


def _load_cuda() -> None:
    """Load CUDA.jl and cuDNN.jl into Julia (HGFBridge's to_device(:cuda) needs both loaded)."""
    from juliacall import JuliaError, Main

    try:
        Main.seval("import CUDA, cuDNN")
    except JuliaError as error:
        adds = "; ".join(
            f"juliapkg.add('{name}', '{uuid}', version='{version}')" for name, (uuid, version) in CUDA_PACKAGES.items()
        )
        raise JuliaNotAvailableError(
            f"device='cuda' needs the Julia packages CUDA and cuDNN in juliapkg's project, and loading them failed "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__}). Add them once: "
            f'python -c "import juliapkg; {adds}; juliapkg.resolve()"'
        ) from None


def to_flux(model_or_spec: Any, device: str = "cpu", *, trainmode: bool = False) -> Any:
    """A Flux model (a juliacall value) from an hgf spec, a local directory or a PyTorch model.

    `"<repo>[@rev]:<task>"` or `"<dir>:<task>"` is loaded by Julia (through this package's Hub,
    store and checkpoint readers); a PyTorch model (ours or transformers') has its weights handed
    over without touching disk. `device` is "cpu" or "cuda" (a functional NVIDIA GPU, and CUDA.jl
    and cuDNN.jl in juliapkg's project: an error otherwise, never a silent CPU model).
    `trainmode=False` switches dropout off, as `load_model` does in Julia.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    hgf_bridge = julia_module()
    from juliacall import Main

    if device == "cuda":
        _load_cuda()
    if isinstance(model_or_spec, (str, os.PathLike)):
        source, revision, task = _spec_source(str(model_or_spec))
        jl_model = hgf_bridge.load_model(source, Main.Symbol(task), revision=revision, trainmode=trainmode)
    else:
        config, task = torch_model_config_and_task(model_or_spec)
        weights = flux_layout.flux_weights(state_dict_numpy(model_or_spec), config, task)
        jl_model = hgf_bridge.model_from_weights(config, Main.Symbol(task), weights, trainmode=trainmode)
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
