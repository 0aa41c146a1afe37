"""The Julia package as far as it can be checked without Julia, and the Python driver's no-Julia path.

Every .jl file must parse (tree-sitter-julia, no ERROR or MISSING node); Project.toml and
bridge/juliapkg.json must agree with each other and with the registry's UUIDs; every field name
the Python tables use must be a field of a Julia struct. julia/test/runtests.jl runs only where a
`julia` executable exists, and is reported as skipped (with the reason) everywhere else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tree_sitter_julia
from tree_sitter import Language, Parser

import flux_numpy
from bridge import flux_layout

ROOT = Path(__file__).resolve().parents[1]
JULIA_DIR = ROOT / "julia"
JULIA_FILES = sorted(JULIA_DIR.rglob("*.jl"))

# General-registry UUIDs (../shared/REFERENCE.md section 5) and stdlib UUIDs, each checked against
# the packages' own Project.toml files (FluxML/Flux.jl, JuliaPy/PythonCall.jl, ...).
REGISTRY_UUIDS = {
    "Artifacts": "56f22d72-fd6d-98f1-02f0-08ddc0907c33",
    "CUDA": "052768ef-5323-5732-b1bb-66c8b64840ba",
    "ChainRulesCore": "d360d2e6-b24c-11e9-a2a3-2a2ae2dbcce4",
    "Flux": "587475ba-b771-5e3f-ad9e-33799f191a9c",
    "Functors": "d9f16b24-f501-4c13-a1f2-28368ffc5196",
    "NNlib": "872c559c-99b0-510c-b3b7-b6c96a88d5cd",
    "PythonCall": "6099a3de-0909-46bc-b1f4-468b9a2dfc0d",
    "SpecialFunctions": "276daf66-3868-5448-9aa4-cd146d93841b",
    "Statistics": "10745b16-79ce-11e8-11f9-7d13ad32a3b2",
    "Test": "8dfed614-e22c-5e08-85e1-65c5234f0b40",
    "cuDNN": "02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd",
}
STDLIBS = {"Artifacts", "Statistics", "Test"}

PARSER = Parser(Language(tree_sitter_julia.language()))


def syntax_problems(source: bytes) -> list:
    """Every ERROR or MISSING node, as (kind, line, column, text)."""
    problems, stack = [], [PARSER.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            text = source[node.start_byte : node.end_byte][:60].decode(errors="replace")
            problems.append(("MISSING" if node.is_missing else "ERROR", node.start_point[0] + 1, node.start_point[1], text))
        stack.extend(node.children)
    return problems


def project() -> dict:
    return tomllib.loads((ROOT / "Project.toml").read_text())


# ---- parsing


def test_the_syntax_check_catches_broken_julia():
    assert syntax_problems(b"function f(x)\n    x +\n")  # unfinished: must be reported
    assert syntax_problems(b"struct A\n    x::Int\n")  # no `end`
    assert not syntax_problems(b'f(x) = x .+ 1\nmacro m_str(s) :(g($s)) end\n')


@pytest.mark.parametrize("path", JULIA_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_julia_file_parses(path):
    assert syntax_problems(path.read_bytes()) == []


def test_every_source_file_is_included_and_exists():
    entry = (ROOT / project()["entryfile"]).read_text()
    included = set(re.findall(r'^include\("([^"]+)"\)', entry, re.MULTILINE))
    sources = {p.name for p in JULIA_DIR.glob("*.jl")} - {"HGFBridge.jl"}
    assert included == sources


def test_every_imported_package_is_a_dependency():
    entry = (ROOT / project()["entryfile"]).read_text()
    used = set(re.findall(r"^using (\w+)", entry, re.MULTILINE))
    assert used == set(project()["deps"])


def test_table_field_names_are_julia_struct_fields():
    """Each field name in bridge.flux_layout's paths is declared by some Julia struct."""
    declared = set()
    for path in JULIA_FILES:
        for body in re.findall(r"^struct \w+(?:\{[^}]*\})?(?: <: \w+)?\n(.*?)^end", path.read_text(), re.MULTILINE | re.DOTALL):
            declared.update(re.findall(r"^\s+(\w+)(?:::|\n)", body + "\n", re.MULTILINE))
    steps = set()
    for family, task in flux_numpy.HF_CLASSES:
        for untied in (False, True):
            config = flux_numpy.our_config(flux_numpy.make_model(family, task, tie_word_embeddings=not untied))
            for entry in flux_layout.flux_table(config, task):
                steps.update(step for step in entry.path if isinstance(step, str))
    assert steps - declared == set()
    assert {"word_embeddings", "c_attn", "attention_norm", "lm_head", "pooler"} <= declared


# ---- Project.toml and juliapkg.json


def test_project_toml_names_the_package_and_its_registry_dependencies():
    toml = project()
    assert (toml["name"], toml["uuid"]) == ("HGFBridge", "8cb98c0f-e9fe-4df6-9aad-352d04889e54")
    assert (ROOT / toml["entryfile"]).is_file() and toml["entryfile"] == "julia/HGFBridge.jl"
    assert toml["compat"]["julia"] == "1.12"
    deps = {**toml["deps"], **toml.get("extras", {})}
    for name, uuid in deps.items():
        assert REGISTRY_UUIDS.get(name) == uuid, name
        assert name in toml["compat"], f"{name} has no compat bound"
    assert toml["targets"]["test"] == ["Test"]


def test_juliapkg_json_agrees_with_project_toml():
    toml = project()
    spec = json.loads((ROOT / "bridge" / "juliapkg.json").read_text())
    assert spec["julia"] == toml["compat"]["julia"]
    packages = spec["packages"]
    ours = packages.pop("HGFBridge")
    assert ours["uuid"] == toml["uuid"] and ours["dev"] is True
    assert (ROOT / "bridge" / ours["path"]).resolve() == ROOT  # resolved from the json's directory
    for name, entry in packages.items():
        assert name in toml["deps"] and name not in STDLIBS, name
        assert entry == {"uuid": toml["deps"][name], "version": toml["compat"][name]}, name
    assert set(toml["deps"]) - STDLIBS == set(packages)


# ---- julia/test/runtests.jl, where Julia exists


def test_julia_runtests():
    julia = shutil.which("julia")
    if julia is None:
        pytest.skip("julia executable not found on PATH: julia/test/runtests.jl was not run (see docs/julia.md)")
    environment = {
        **os.environ,
        "JULIA_CONDAPKG_BACKEND": "Null",
        "JULIA_PYTHONCALL_EXE": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run([julia, "--project=" + str(ROOT), "-e", "using Pkg; Pkg.instantiate()"], check=True, env=environment)
    result = subprocess.run(
        [julia, "--project=" + str(ROOT), str(JULIA_DIR / "test" / "runtests.jl")], env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


# ---- bridge.julia without Julia


def test_importing_bridge_julia_starts_nothing():
    code = "import sys, bridge.julia; print('juliacall' in sys.modules, 'torch' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert output.split() == ["False", "False"]


def test_without_julia_calls_explain_how_to_install_it(monkeypatch, tmp_path):
    import bridge.julia as bj

    monkeypatch.setenv("PATH", str(tmp_path))  # no julia here
    for variable in bj.JULIA_EXECUTABLE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(bj, "_MODULE", None)
    for call in (lambda: bj.to_flux("gpt2:lmheadmodel"), bj.julia_module, lambda: bj.from_flux(object())):
        with pytest.raises(bj.JuliaNotAvailableError) as caught:
            call()
        message = str(caught.value)
        assert "juliaup" in message and "julialang.org" in message and "juliapkg.json" in message
        assert "HGFBridge" in message and "Flux" in message
    assert "juliacall" not in sys.modules


def test_a_julia_on_path_with_old_openssl_is_refused_clearly(monkeypatch, tmp_path):
    import bridge.julia as bj

    fake = tmp_path / "julia"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(bj, "_openssl_julia_limit", lambda: "1 - 1.11")
    with pytest.raises(bj.JuliaNotAvailableError, match="1 - 1.11.*1.12"):
        bj._require_julia()
    monkeypatch.setattr(bj, "_openssl_julia_limit", lambda: None)
    assert bj._require_julia() == str(fake)


def test_juliacall_options_are_set_and_torch_first_is_warned(monkeypatch):
    import bridge.julia as bj

    for variable in bj.JULIACALL_DEFAULTS:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PYTHON_JULIACALL_THREADS", "4")  # a user's choice is kept
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch") or object())
    monkeypatch.delitem(sys.modules, "juliacall", raising=False)
    with pytest.warns(bj.TorchImportedFirstWarning):
        bj.prepare_juliacall_environment()
    assert os.environ["PYTHON_JULIACALL_HANDLE_SIGNALS"] == "yes"
    assert os.environ["PYTHON_JULIACALL_THREADS"] == "4"


@pytest.mark.parametrize("family,task", sorted(flux_numpy.HF_CLASSES))
def test_torch_models_name_their_config_and_task(family, task):
    import bridge.julia as bj

    model = flux_numpy.make_model(family, task)
    config, found = bj.torch_model_config_and_task(model)
    assert (config.model_type, found) == (family, task)
    assert config.to_dict() == flux_numpy.our_config(model).to_dict()


def test_state_dict_numpy_keeps_bf16_bits():
    import ml_dtypes
    import torch

    import bridge.julia as bj

    model = flux_numpy.make_model("gpt2", "model").to(torch.bfloat16)
    arrays = bj.state_dict_numpy(model)
    weight = model.state_dict()["wte.weight"]
    assert arrays["wte.weight"].dtype == ml_dtypes.bfloat16
    assert arrays["wte.weight"].astype("float32").tobytes() == weight.float().numpy().tobytes()


def test_specs_name_a_source_revision_and_task():
    import bridge.julia as bj

    assert bj._spec_source("gpt2@v1:LMHeadModel") == ("gpt2", "v1", "lmheadmodel")
    assert bj._spec_source("org/bert") == ("org/bert", None, "model")
    with pytest.raises(flux_layout.FluxLayoutError, match="tokenizer"):
        bj._spec_source("gpt2:tokenizer")
