"""The Julia package as far as it can be checked without Julia, and the Python driver's no-Julia path.

Static checks: every .jl file parses (tree-sitter-julia, no ERROR or MISSING node) and `fatou lint`
(a Julia linter that runs no Julia) reports nothing; julia/Project.toml is a standard package with
registry UUIDs and a compat bound for every dependency, CUDA only in the test environment; the
root Project.toml develops it; bridge/juliapkg.json agrees, and juliapkg itself (its real discovery
code) finds it in an editable install and is told clearly what to do in a wheel. Where a Julia
exists, julia/test/runtests.jl and the Python driver run against it; elsewhere they are reported as
skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest
import tree_sitter_julia
from tree_sitter import Language, Parser

import flux_numpy
from bridge import flux_layout

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "julia"
SOURCES = PACKAGE / "src"
JULIA_FILES = sorted(PACKAGE.rglob("*.jl"))
HGFBRIDGE_UUID = "8cb98c0f-e9fe-4df6-9aad-352d04889e54"

# General-registry UUIDs (../shared/REFERENCE.md section 5) and stdlib UUIDs, each checked against
# the packages' own Project.toml files (FluxML/Flux.jl, JuliaPy/PythonCall.jl, JuliaGPU/CUDA.jl, ...).
REGISTRY_UUIDS = {
    "Artifacts": "56f22d72-fd6d-98f1-02f0-08ddc0907c33",
    "CUDA": "052768ef-5323-5732-b1bb-66c8b64840ba",
    "ChainRulesCore": "d360d2e6-b24c-11e9-a2a3-2a2ae2dbcce4",
    "Flux": "587475ba-b771-5e3f-ad9e-33799f191a9c",
    "Functors": "d9f16b24-f501-4c13-a1f2-28368ffc5196",
    "NNlib": "872c559c-99b0-510c-b3b7-b6c96a88d5cd",
    "PythonCall": "6099a3de-0909-46bc-b1f4-468b9a2dfc0d",
    "Random": "9a3f8284-a2c9-5f02-9a11-845980a1fd5c",
    "SpecialFunctions": "276daf66-3868-5448-9aa4-cd146d93841b",
    "Statistics": "10745b16-79ce-11e8-11f9-7d13ad32a3b2",
    "Test": "8dfed614-e22c-5e08-85e1-65c5234f0b40",
    "cuDNN": "02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd",
}
GPU_PACKAGES = {"CUDA", "cuDNN"}

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


def package_project() -> dict:
    return tomllib.loads((PACKAGE / "Project.toml").read_text())


def root_project() -> dict:
    return tomllib.loads((ROOT / "Project.toml").read_text())


def used_packages(path: Path) -> set:
    """The packages a file loads with `using A, B` / `using A: x` / `import A` at the top level."""
    names = set()
    for clause in re.findall(r"^(?:using|import) ([^\n:#]+)", path.read_text(), re.MULTILINE):
        names.update(name.strip() for name in clause.split(","))
    return names


# ---- parsing and linting


def test_the_syntax_check_catches_broken_julia():
    assert syntax_problems(b"function f(x)\n    x +\n")  # unfinished: must be reported
    assert syntax_problems(b"struct A\n    x::Int\n")  # no `end`
    assert not syntax_problems(b'f(x) = x .+ 1\nmacro m_str(s) :(g($s)) end\n')


@pytest.mark.parametrize("path", JULIA_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_julia_file_parses(path):
    assert syntax_problems(path.read_bytes()) == []


def fatou(*arguments: str) -> subprocess.CompletedProcess:
    executable = shutil.which("fatou") or str(Path(sys.executable).with_name("fatou"))
    if not Path(executable).is_file():
        pytest.fail("fatou (the PyPI package, a Julia linter) is a test dependency and is not installed")
    return subprocess.run([executable, "lint", "--color", "never", *arguments], capture_output=True, text=True, cwd=ROOT)


def test_fatou_reports_nothing_on_the_julia_package():
    result = fatou("julia/")
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "clean" in output, output
    assert not re.search(r"^(warning|error)", output, re.MULTILINE), output


def test_fatou_would_report_an_unused_binding(tmp_path):
    (tmp_path / "bad.jl").write_text("function f()\n    unused = 1\n    return 2\nend\n")
    result = fatou(str(tmp_path))
    assert "unused-binding" in result.stdout + result.stderr


# ---- the package's layout and sources


def test_the_package_has_the_standard_layout():
    toml = package_project()
    assert (toml["name"], toml["uuid"]) == ("HGFBridge", HGFBRIDGE_UUID)
    assert "entryfile" not in toml  # Julia >= 1.12 only, and breaks pkgdir/pkgversion (julia PR #55720)
    assert (SOURCES / "HGFBridge.jl").is_file() and (PACKAGE / "test" / "runtests.jl").is_file()
    assert not list(PACKAGE.glob("*.jl"))  # sources under src/, nothing loose at the package root


def test_every_source_file_is_included_once_by_a_one_line_include():
    entry = (SOURCES / "HGFBridge.jl").read_text()
    included = re.findall(r'^include\("([^"]+)"\)$', entry, re.MULTILINE)
    assert len(included) == len(set(included))
    assert set(included) == {p.name for p in SOURCES.glob("*.jl")} - {"HGFBridge.jl"}


def test_the_package_loads_exactly_its_dependencies():
    toml = package_project()
    assert used_packages(SOURCES / "HGFBridge.jl") == set(toml["deps"])
    for path in SOURCES.glob("*.jl"):  # every `using` lives in the entry file
        assert path.name == "HGFBridge.jl" or not used_packages(path), path.name
    test_environment = set(toml["deps"]) | set(toml["targets"]["test"]) | {"HGFBridge"}
    assert used_packages(PACKAGE / "test" / "runtests.jl") <= test_environment
    for example in (PACKAGE / "examples").glob("*.jl"):
        assert used_packages(example) <= set(root_project()["deps"]), example.name


def test_python_is_reached_through_one_function():
    """python_module says which Python PythonCall runs and what to set when hgf-bridge is missing."""
    for path in SOURCES.glob("*.jl"):
        if path.name != "python.jl":
            assert 'pyimport("bridge' not in path.read_text(), path.name


def test_table_field_names_are_julia_struct_fields():
    """Each field name in bridge.flux_layout's paths is declared by some Julia struct."""
    declared = set()
    for path in SOURCES.glob("*.jl"):
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


def registered_tasks() -> dict:
    """MODEL_TYPES[:family] = Dict(:task => Type, ...) as the family files register them."""
    registered = {}
    for path in SOURCES.glob("*.jl"):
        for family, body in re.findall(r"^MODEL_TYPES\[:(\w+)\] = Dict\((.*?)\)$", path.read_text(), re.MULTILINE | re.DOTALL):
            registered[family] = dict(re.findall(r":(\w+) => (\w+)", body))
    return registered


def test_every_family_registers_the_tasks_python_has_tables_for():
    registered = registered_tasks()
    assert {family: set(tasks) for family, tasks in registered.items()} == {f: set(t) for f, t in flux_layout.TASKS.items()}
    sources = "\n".join(path.read_text() for path in SOURCES.glob("*.jl"))
    for family, tasks in registered.items():
        for task, flux_type in tasks.items():
            assert flux_layout.FLUX_TYPES[(family, task)] == flux_type  # transformers' class name (Llama's for its family)
            # a model the user loads: an HGFPreTrainedModel (one-line show) holding its config
            body = re.search(rf"^struct {flux_type}\{{[^}}]*\}} <: HGFPreTrainedModel\n(.*?)^end", sources, re.MULTILINE | re.DOTALL)
            assert body and re.search(r"^\s+config::", body.group(1), re.MULTILINE), flux_type


# ---- Project.toml files and juliapkg.json


def test_project_toml_uuids_compat_and_gpu_only_in_tests():
    toml = package_project()
    assert toml["compat"]["julia"] == "1.10"  # the LTS and every later 1.x
    assert GPU_PACKAGES.isdisjoint(toml["deps"]) and GPU_PACKAGES.isdisjoint(toml.get("weakdeps", {}))
    assert GPU_PACKAGES <= set(toml["extras"]) and GPU_PACKAGES <= set(toml["targets"]["test"])
    for name, uuid in {**toml["deps"], **toml["extras"]}.items():
        assert REGISTRY_UUIDS.get(name) == uuid, name
        assert name in toml["compat"], f"{name} has no compat bound"
    # Floors that work on every Julia the compat admits (1.12 included), each from the package's history:
    assert toml["compat"]["Flux"] == "0.16.7"  # FluxCUDAExt fixed for Julia 1.12 (Flux PRs #2632, #2637)
    assert (toml["compat"]["CUDA"], toml["compat"]["cuDNN"]) == ("5, 6", "1, 6")


def test_root_project_is_an_environment_that_develops_the_package():
    toml = root_project()
    assert "name" not in toml and "uuid" not in toml  # an environment, not a second package
    assert toml["deps"]["HGFBridge"] == HGFBRIDGE_UUID
    assert toml["sources"]["HGFBridge"] == {"path": "julia"}  # Julia >= 1.11; on 1.10: Pkg.develop(path="julia")
    assert GPU_PACKAGES <= set(toml["deps"])  # the examples and GPU checks load them
    for name, uuid in toml["deps"].items():
        if name != "HGFBridge":
            assert REGISTRY_UUIDS.get(name) == uuid and name in toml["compat"], name
            assert toml["compat"][name] == package_project()["compat"].get(name, toml["compat"][name]), name
    assert toml["compat"]["julia"] == package_project()["compat"]["julia"]


def test_juliapkg_json_and_bridge_julia_agree_with_project_toml():
    import bridge.julia as bj

    toml = package_project()
    spec = json.loads((ROOT / "bridge" / "juliapkg.json").read_text())
    assert spec["julia"] == toml["compat"]["julia"] == bj.JULIA_COMPAT
    assert list(spec["packages"]) == ["HGFBridge"]  # its dependencies come from julia/Project.toml
    ours = spec["packages"]["HGFBridge"]
    assert ours["uuid"] == toml["uuid"] == bj.HGFBRIDGE_UUID and ours["dev"] is True
    assert (ROOT / "bridge" / ours["path"]).resolve() == PACKAGE  # resolved from the json's directory
    for name, (uuid, version) in bj.CUDA_PACKAGES.items():
        assert REGISTRY_UUIDS[name] == uuid and toml["compat"][name] == version


# ---- juliapkg's own discovery (pure Python: no Julia starts)


def juliacall_deps_file() -> str:
    """juliacall's own juliapkg.json, found without importing juliacall (which would start Julia)."""
    import importlib.util

    return str(Path(importlib.util.find_spec("juliacall").origin).with_name("juliapkg.json"))


@pytest.fixture
def juliapkg_sees_this_checkout(monkeypatch):
    """juliapkg as an editable install of this checkout shows it: our juliapkg.json and juliacall's."""
    from juliapkg import deps

    monkeypatch.setattr(deps, "deps_files", lambda: [str(ROOT / "bridge" / "juliapkg.json"), juliacall_deps_file()])


def _without_this_checkout(entries):
    return [e for e in entries if Path(e or os.getcwd()).resolve() != ROOT]


def test_juliapkg_finds_the_checkout_on_sys_path(monkeypatch):
    import bridge.julia as bj
    from juliapkg import deps

    monkeypatch.setattr(deps, "editable_deps_files", lambda: [])  # only the sys.path scan
    monkeypatch.setattr(sys, "path", [str(ROOT), *_without_this_checkout(sys.path)])
    compat, packages = bj.julia_requirements()
    assert Path(packages["HGFBridge"].path) == PACKAGE and packages["HGFBridge"].dev
    assert str(ROOT / "bridge" / "juliapkg.json") in deps.deps_files()


def test_juliapkg_finds_an_editable_install_through_its_meta_path_finder(monkeypatch):
    """setuptools' editable installs put no source folder on sys.path: a finder maps package names
    to folders, and juliapkg reads that finder's MAPPING (juliapkg.deps.editable_deps_files)."""
    import bridge.julia as bj
    from juliapkg import deps

    name = "__editable___hgf_bridge_0_1_0_finder"
    finder_module = types.ModuleType(name)
    finder_module.MAPPING = {"bridge": str(ROOT / "bridge"), "pickle_io": str(ROOT / "pickle_io")}
    finder = type("_EditableFinder", (), {"__module__": name, "find_spec": classmethod(lambda cls, *a, **k: None)})
    others = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable___")]
    monkeypatch.setitem(sys.modules, name, finder_module)
    monkeypatch.setattr(sys, "meta_path", [*others, finder])
    monkeypatch.setattr(sys, "path", _without_this_checkout(sys.path))
    assert str(ROOT / "bridge" / "juliapkg.json") in deps.editable_deps_files()
    compat, packages = bj.julia_requirements()
    assert Path(packages["HGFBridge"].path) == PACKAGE


def test_a_wheel_without_juliapkg_json_says_how_to_point_juliapkg_at_the_package(monkeypatch):
    import bridge.julia as bj
    from juliapkg import deps

    monkeypatch.setattr(deps, "deps_files", lambda: [juliacall_deps_file()])  # what a wheel install shows
    monkeypatch.delenv("PYTHON_JULIAPKG_PROJECT", raising=False)
    _, packages = bj.julia_requirements()
    with pytest.raises(bj.JuliaNotAvailableError) as caught:
        bj._require_hgfbridge(packages)
    message = str(caught.value)
    assert f"juliapkg.add('HGFBridge', '{HGFBRIDGE_UUID}', dev=True" in message
    assert "PYTHON_JULIAPKG_PROJECT" in message and "pip install -e" in message
    monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", "/some/julia/project")  # the user's own project: trusted
    bj._require_hgfbridge(packages)


def test_a_dev_path_into_site_packages_is_refused(monkeypatch, tmp_path):
    """The old wheel shipped bridge/juliapkg.json with path "..", i.e. site-packages itself."""
    import bridge.julia as bj
    from juliapkg import deps

    shipped = tmp_path / "site-packages" / "bridge" / "juliapkg.json"
    shipped.parent.mkdir(parents=True)
    shipped.write_text(json.dumps({"julia": "1.10", "packages": {"HGFBridge": {"uuid": HGFBRIDGE_UUID, "dev": True, "path": ".."}}}))
    monkeypatch.setattr(deps, "deps_files", lambda: [str(shipped)])
    monkeypatch.delenv("PYTHON_JULIAPKG_PROJECT", raising=False)
    _, packages = bj.julia_requirements()
    with pytest.raises(bj.JuliaNotAvailableError, match="does not name a folder holding HGFBridge's Project.toml"):
        bj._require_hgfbridge(packages)


# ---- bridge.julia without Julia


def test_importing_bridge_julia_starts_nothing():
    code = "import sys, bridge.julia; print('juliacall' in sys.modules, 'torch' in sys.modules, 'juliapkg' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert output.split() == ["False", "False", "False"]


def test_without_juliacall_the_error_names_the_extra(monkeypatch):
    import bridge.julia as bj

    monkeypatch.setitem(sys.modules, "juliacall", None)  # as if not installed
    monkeypatch.setattr(bj, "_MODULE", None)
    for call in (bj.julia_module, lambda: bj.to_flux("gpt2:lmheadmodel"), bj.julia_requirements):
        with pytest.raises(bj.JuliaNotAvailableError, match=re.escape('pip install "hgf-bridge[julia]"')):
            call()


def fake_julia(directory: Path, version: str) -> Path:
    """An executable that answers `--version` as Julia does (juliapkg.find_julia.julia_version reads it)."""
    directory.mkdir(exist_ok=True)
    julia = directory / "julia"
    julia.write_text(f'#!/bin/sh\necho "julia version {version}"\n')
    julia.chmod(0o755)
    return julia


@pytest.fixture
def no_julia_variables(monkeypatch):
    import bridge.julia as bj

    for variable in bj.JULIA_EXECUTABLE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(bj, "_MODULE", None)


def test_without_julia_calls_explain_how_to_install_it(monkeypatch, tmp_path, juliapkg_sees_this_checkout, no_julia_variables):
    import bridge.julia as bj

    monkeypatch.setenv("PATH", str(tmp_path))  # no julia here
    for call in (lambda: bj.to_flux("gpt2:lmheadmodel"), bj.julia_module, lambda: bj.from_flux(object())):
        with pytest.raises(bj.JuliaNotAvailableError) as caught:
            call()
        message = str(caught.value)
        assert "no Julia executable found" in message and "juliaup add 1.10" in message and "julialang.org" in message
        assert "juliapkg.json" in message and "HGFBridge" in message and "Flux" in message
    assert bj.find_julia() is None


@pytest.mark.parametrize(
    "version,openssl_limit,accepted",
    [
        ("1.9.4", None, False),  # below HGFBridge's compat
        ("1.10.2", None, False),  # below juliacall's own (^1.10.3): juliapkg's merged compat decides
        ("1.10.5", None, True),  # the LTS
        ("1.11.3", "1 - 1.11", True),
        ("1.12.1", None, True),
        ("1.12.1", "1 - 1.11", False),  # OpenSSL < 3.5: juliapkg allows only Julia <= 1.11
        ("2.0.0", None, False),
    ],
)
def test_find_julia_checks_the_version_against_the_compat(
    monkeypatch, tmp_path, juliapkg_sees_this_checkout, no_julia_variables, version, openssl_limit, accepted
):
    import bridge.julia as bj
    from juliapkg import deps

    monkeypatch.setattr(deps, "openssl_compat", lambda version=None: ("3 - 3.0", openssl_limit))
    julia = fake_julia(tmp_path / "bin", version)
    monkeypatch.setenv("PATH", str(julia.parent))
    assert bj.find_julia() == (str(julia) if accepted else None)
    if accepted:
        assert bj._require_julia() == str(julia)
        return
    with pytest.raises(bj.JuliaNotAvailableError) as caught:
        bj._require_julia()
    message = str(caught.value)
    assert f"found Julia {version} at {julia}" in message and "juliapkg allows Julia" in message
    assert ("OpenSSL" in message) == (openssl_limit is not None)


def test_a_julia_named_by_variable_comes_first(monkeypatch, tmp_path, juliapkg_sees_this_checkout, no_julia_variables):
    import bridge.julia as bj

    old = fake_julia(tmp_path / "old", "1.9.0")
    good = fake_julia(tmp_path / "good", "1.10.5")
    monkeypatch.setenv("PATH", str(old.parent))
    monkeypatch.setenv("PYTHON_JULIACALL_EXE", str(good))
    assert bj.find_julia() == str(good)


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


# ---- against a real Julia, where there is one


def julia_environment() -> dict:
    """PythonCall inside Julia must use this Python (which has bridge, transformers, flux_numpy)."""
    return {
        **os.environ,
        "JULIA_CONDAPKG_BACKEND": "Null",
        "JULIA_PYTHONCALL_EXE": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def test_julia_runtests():
    julia = shutil.which("julia")
    if julia is None:
        pytest.skip("julia executable not found on PATH: julia/test/runtests.jl was not run (see docs/julia.md)")
    result = subprocess.run(
        [julia, f"--project={PACKAGE}", "-e", "using Pkg; Pkg.test()"], env=julia_environment(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


DRIVER_CHECK = r'''
import sys
import bridge.julia as bj
bj.julia_module()  # juliacall before torch
import numpy as np, tempfile, torch, transformers
import flux_numpy
from juliacall import Main

model = flux_numpy.make_model("gpt2", "lmheadmodel")
jl_model = bj.to_flux(model)
assert len(str(jl_model)) < 100, str(jl_model)  # two-argument show: no weights
ids, mask, _ = flux_numpy.inputs("gpt2")
julia_ids = Main.seval("ids -> Matrix{Int}(ids)")(bj.flux_layout.token_ids_to_flux(ids))
logits = np.asarray(jl_model(julia_ids).logits)
expected = model(input_ids=torch.tensor(ids)).logits.detach().numpy().T
assert np.abs(logits - expected).max() < 1e-5
state_dict = bj.from_flux(jl_model)
original = model.state_dict()
assert set(state_dict) == set(original) - {"lm_head.weight"}
assert all(state_dict[k].tobytes() == original[k].numpy().tobytes() for k in state_dict)
directory = tempfile.mkdtemp()
bj.save_pretrained_from_flux(jl_model, directory)
assert flux_numpy.reload_mismatches(model, directory) == []
reloaded = bj.to_flux(directory + ":lmheadmodel")
assert np.array_equal(np.asarray(reloaded(julia_ids).logits), logits)
print("driver ok")
'''


def test_the_python_driver_against_julia():
    import bridge.julia as bj

    try:
        julia = bj.find_julia()
    except bj.JuliaNotAvailableError as error:
        pytest.skip(f"bridge.julia cannot run here: {error}")
    if julia is None:
        pytest.skip("no Julia that juliapkg allows here (julia on PATH or $PYTHON_JULIACALL_EXE): to_flux/from_flux/save_pretrained_from_flux were not run")
    environment = {**julia_environment(), "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    result = subprocess.run([sys.executable, "-c", DRIVER_CHECK], env=environment, capture_output=True, text=True)
    assert result.returncode == 0 and "driver ok" in result.stdout, result.stdout[-4000:] + result.stderr[-4000:]
