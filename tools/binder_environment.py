"""Write environment.yml (Binder) from requirements.lock, so Binder installs the locked versions.

Binder builds Linux images for Python 3.11, so the lock's markers are evaluated for that platform. PyTorch's
CPU index comes first there: the same torch==2.13.0 without GBs of CUDA libraries a Binder image cannot use.
"""
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
BINDER_PYTHON = "3.11"
BINDER_PLATFORM = {"python_version": BINDER_PYTHON, "python_full_version": BINDER_PYTHON + ".7",
                   "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                   "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython"}
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def binder_requirements(lock_text):
    """The lock's pins that apply on Binder, without their markers."""
    pins = []
    for line in lock_text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(BINDER_PLATFORM):
            pins.append(f"{requirement.name}{requirement.specifier}")
    return pins


def environment_yml(lock_text):
    lines = ["# Generated from requirements.lock by tools/binder_environment.py (make lock); do not edit.",
             "name: resnet-course", "channels:", "  - conda-forge", "dependencies:",
             f"  - python={BINDER_PYTHON}", "  - pip", "  - pip:", f"      - --extra-index-url {TORCH_CPU_INDEX}"]
    lines += [f"      - {pin}" for pin in binder_requirements(lock_text)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = ROOT / "environment.yml"
    target.write_text(environment_yml((ROOT / "requirements.lock").read_text()))
    print(f"wrote {target}", file=sys.stderr)
