"""The package as users install it: the wheel, in a fresh venv without torch, and the locked set-up.

The wheel test builds `pip wheel --no-deps .`, installs it (its dependencies pinned to the lock's
versions, so pip's cache serves them) into a new venv that has no torch, and uses it there as a new
user would: the CLI, pickle_io, and the one clear error a model gives without torch.
"""

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "test.lock"


def _run(command, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Build from a clean copy: setuptools reuses a checkout's build/ directory, stale files included.
    source = tmp_path_factory.mktemp("source") / "hgf-bridge"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", "demo-output", ".hypothesis", "__pycache__", ".pytest_cache"))
    out = tmp_path_factory.mktemp("wheel")
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)])
    assert build.returncode == 0, build.stdout + build.stderr
    assert "License classifiers are deprecated" not in build.stderr and "project.license" not in build.stderr
    (path,) = out.glob("hgf_bridge-*.whl")
    return path


@pytest.fixture(scope="module")
def torchless_venv(wheel, tmp_path_factory):
    venv = tmp_path_factory.mktemp("venv") / "v"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    python = venv / "bin" / "python"
    install = _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(LOCK), str(wheel)])
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def test_wheel_carries_the_packages_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"bridge", "pickle_io", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    runtime = [line for line in requires if "extra ==" not in line]
    # torch, juliacall and pytest are extras, not runtime dependencies.
    assert not [line for line in runtime if re.search(r"\b(torch|juliacall|pytest)\b", line)], runtime
    assert any("torch" in line and 'extra == "torch"' in line for line in requires)
    assert any("juliacall" in line and 'extra == "julia"' in line for line in requires)
    assert "License-Expression: MIT" in metadata
    # juliapkg.json points at ../julia, which is the source tree in an editable install but would be
    # site-packages/ in a wheel: pyjuliapkg would then `Pkg.develop` site-packages for every package.
    assert "bridge/juliapkg.json" not in names and not any(name.startswith("julia/") for name in names)


def test_torchless_venv_has_no_torch(torchless_venv):
    probe = _run([str(torchless_venv / "bin" / "python"), "-c", "import torch"])
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr


def test_torchless_install_reads_and_writes_checkpoints(torchless_venv, tmp_path):
    python, hgf = torchless_venv / "bin" / "python", torchless_venv / "bin" / "hgf"
    make = _run(
        [str(python), "-c", "import numpy as np, pickle_io, bridge; "
         "pickle_io.save({'w': np.arange(6, dtype=np.float32).reshape(2, 3)}, 'c.bin')"],
        cwd=tmp_path,
    )
    assert make.returncode == 0, make.stderr
    assert _run([str(hgf), "--help"]).returncode == 0
    inspect = _run([str(hgf), "inspect", "c.bin"], cwd=tmp_path)
    assert inspect.returncode == 0 and "w" in inspect.stdout and "float32" in inspect.stdout, inspect.stdout + inspect.stderr
    convert = _run([str(hgf), "convert", "c.bin", "c.safetensors"], cwd=tmp_path)
    assert convert.returncode == 0, convert.stderr
    check = _run(
        [str(python), "-c", "import numpy as np, pickle_io; "
         "assert (pickle_io.load('c.safetensors')['w'] == np.arange(6).reshape(2, 3)).all()"],
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr


def test_julia_driver_imports_without_juliacall_and_says_what_to_install(torchless_venv, tmp_path):
    script = (
        "import bridge.julia\n"
        "try:\n    bridge.julia.julia_module()\n"
        "except bridge.julia.JuliaNotAvailableError as error:\n    print(error)\n"
    )
    result = _run([str(torchless_venv / "bin" / "python"), "-c", script], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'pip install "hgf-bridge[julia]"' in result.stdout


def test_torchless_install_gives_one_clear_error_for_a_model(torchless_venv, tmp_path):
    python, hgf = torchless_venv / "bin" / "python", torchless_venv / "bin" / "hgf"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"model_type": "bert"}')
    for command in ([str(hgf), "get", "m:model"], [str(python), "-c", "from bridge import hgf; hgf('m:model')"]):
        result = _run(command, cwd=tmp_path)
        assert result.returncode == 1
        last_line = result.stderr.strip().splitlines()[-1]
        assert "MissingDependencyError" in last_line or last_line.startswith("hgf get: error:")
        assert "pip install 'hgf-bridge[torch]'" in last_line
        assert "ModuleNotFoundError:" not in result.stderr and "During handling" not in result.stderr
    cli = _run([str(hgf), "get", "m:model"], cwd=tmp_path)
    assert "Traceback" not in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
    config = _run([str(hgf), "get", "m:config"], cwd=tmp_path)  # configs need no torch
    assert config.returncode == 0 and config.stdout.startswith("BertConfig")


# --- The lock -----------------------------------------------------------------------------------

LOCKED_ONLY = pytest.mark.skipif(
    bool(os.environ.get("HGF_BRIDGE_UNLOCKED")),
    reason="make test-latest / test-lowest run the suite outside the lock on purpose",
)


def _lock() -> dict:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _imported_top_modules(paths) -> set:
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


@LOCKED_ONLY
def test_lock_pins_every_package_the_code_tests_and_benchmarks_import():
    pins = _lock()
    distributions = importlib.metadata.packages_distributions()
    files = [*ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("bridge/**/*.py"), *ROOT.glob("pickle_io/*.py")]
    missing = []
    for module in sorted(_imported_top_modules(files)):
        for dist in distributions.get(module, []):
            name = re.sub(r"[-_.]+", "-", dist).lower()
            if name != "hgf-bridge" and name not in pins:
                missing.append(f"{module} ({dist})")
    assert not missing, f"imported but not in {LOCK.name}: {missing}"


@LOCKED_ONLY
def test_the_environment_is_the_lock():
    """`make test` installs exactly the lock (torch's local build label aside)."""
    pins = _lock()
    installed = {
        re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(): dist.version.split("+")[0]
        for dist in importlib.metadata.distributions()
    }
    differ = {name: (version, installed.get(name)) for name, version in pins.items() if installed.get(name) != version}
    assert not differ, f"installed versions differ from {LOCK.name}: {differ}"
    extra = sorted(set(installed) - set(pins) - {"hgf-bridge"})
    assert not extra, f"installed but not in {LOCK.name}: {extra}"
    # The weights are data: none of their dependencies are installed.
    assert not {"sentence-transformers", "scikit-learn", "scipy"} & set(installed)


def test_lower_bounds_admit_the_locked_versions():
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ImportError:
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *(r for extra in ("torch", "julia", "test") for r in project["optional-dependencies"][extra])]
    pins = _lock()
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is a dependency but not in the lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])
