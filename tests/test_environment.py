"""The lock, Binder's environment.yml, pyproject.toml and the installed .venv all agree."""
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import binder_environment  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LOCK_TEXT = (ROOT / "requirements.lock").read_text()


def lock_requirements():
    return [Requirement(line) for line in LOCK_TEXT.splitlines() if line.strip() and not line.startswith("#")]


def test_every_lock_entry_is_an_exact_portable_pin():
    for requirement in lock_requirements():
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{requirement} is not an exact pin"
        assert "+" not in spec.version, f"{requirement} has a platform-local version tag"


def test_torch_is_pinned_and_cuda_wheels_are_left_to_torch():
    pins = {canonicalize_name(r.name): str(r.specifier) for r in lock_requirements()}
    assert pins["torch"] == "==2.13.0"
    assert not [name for name in pins if name.startswith(("nvidia-", "cuda-", "triton"))]


def test_lock_satisfies_every_dependency_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    locked = {}
    for requirement in lock_requirements():
        locked.setdefault(canonicalize_name(requirement.name), []).append(next(iter(requirement.specifier)).version)
    for requirement in wanted:
        versions = locked.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is missing from the lock"
        assert all(requirement.specifier.contains(v) for v in versions), f"the lock's {versions} break {requirement}"


def test_lock_covers_linux_and_macos():
    markers = [str(r.marker) for r in lock_requirements() if r.marker]
    assert any("darwin" in m for m in markers), "nothing macOS-specific: was the lock resolved for one platform?"


def test_binder_environment_matches_the_lock():
    committed = (ROOT / "environment.yml").read_text()
    assert committed == binder_environment.environment_yml(LOCK_TEXT), "run `make lock` to regenerate environment.yml"
    environment = yaml.safe_load(committed)
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    pins = [p for p in pip_section if not p.startswith("--")]
    assert "torch==2.13.0" in pins and any(d.startswith("python=3.11") for d in environment["dependencies"]
                                           if isinstance(d, str))
    assert len(pins) == len([r for r in lock_requirements()
                             if r.marker is None or r.marker.evaluate(binder_environment.BINDER_PLATFORM)])


def test_installed_environment_is_the_lock():
    for requirement in lock_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed.split("+")[0]), (
            f"{requirement.name} {installed} is installed, the lock says {requirement.specifier}: run `make setup`")
