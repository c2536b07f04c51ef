# The two commands a learner needs are `make lab` and `make test`; every target sets up .venv/ first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.setup-stamp
LOCK := requirements.lock
GRADER_LOCK := requirements-grader.lock
PORT ?= 8888
SUBMISSIONS ?=
OUT ?= grading
ASSIGNMENT ?= residual_blocks
# The venv's bin/ comes first so that nbgrader finds this venv's alembic and jupyter.
export PATH := $(BIN):$(PATH)

.PHONY: setup lab test test-fast release grade bench gpu-check lock browser bubblewrap slurm docker docker-check clean \
	nbgrader-compat

setup: $(STAMP) bubblewrap

$(STAMP): $(LOCK) pyproject.toml lab-overrides.json
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v <= (3, 12) else "Python 3.11 or 3.12 is needed, found %d.%d: run make PYTHON=python3.11" % v)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	install -D -m 644 lab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

lab: setup
	$(BIN)/jupyter lab --no-browser --port=$(PORT) --ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) \
		--ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/README.md

test: setup
	$(BIN)/python -m pytest

# The unit tests alone, in a few minutes: everything but the tests marked slow (kernels, whole grading runs through the
# CLI or nbgrader, the sandbox, the lessons run by nbval, Slurm, Docker, the browser, the Colab venv). `make test`
# still runs them all; tests/test_fast_split.py keeps what starts a kernel or the grader out of this set.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

release: setup
	$(BIN)/nbgrader generate_assignment $(ASSIGNMENT) --force --no-db

grade: setup
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder-or-zip [OUT=dir]"; exit 2; }
	$(BIN)/python -m autograde grade "$(SUBMISSIONS)" --assignment $(ASSIGNMENT) --out "$(OUT)"

bench: setup
	$(BIN)/python -m benchmarks

# nbgrader's own tests of the apps the grading plugins touch, with the plugins loaded from nbgrader_config.py as a
# global configuration: they must pass as with stock settings, but for the differences docs/instructors.md names.
nbgrader-compat: setup
	$(BIN)/python tools/nbgrader_compat.py

# Where PyTorch sees a GPU: every lesson and the grading of the reference solution on CUDA, with timings.
# Anywhere else it runs the same on the CPU, as a dry run, and says so on every line that matters.
gpu-check: setup
	$(BIN)/python -m benchmarks.gpu_check

# Maintainers only: re-resolve the lock for Linux and macOS, Python 3.11 and 3.12, and Binder's environment.yml.
# torch's CUDA wheels (Linux) come with their own exact pins, so they are left to pip.
# $(GRADER_LOCK), for Gradescope's image, is the same resolution without the test extra: constrained to the full
# lock's exact pins, it can only leave packages out, never pin another version.
lock: setup
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/python -m uv pip compile pyproject.toml --extra test $(LOCK_OPTIONS) -o $(LOCK)
	$(BIN)/python -m uv pip compile pyproject.toml -c $(LOCK) $(LOCK_OPTIONS) -o $(GRADER_LOCK)
	$(BIN)/python tools/binder_environment.py

LOCK_OPTIONS = --universal --python-version 3.11 --no-header --no-annotate \
	$(foreach p,triton cuda-bindings cuda-pathfinder cuda-toolkit $(NVIDIA_PACKAGES),--no-emit-package $(p))

NVIDIA_PACKAGES := nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 \
	nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 \
	nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx

# Headless Chromium for the browser tests: Debian's package, never a browser that a tool downloads itself.
# Without it (no root, no apt) the browser tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
		echo "make browser: cannot install Chromium without root; the browser tests will be skipped"; exit 0; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
		|| echo "make browser: apt-get could not install chromium; the browser tests will be skipped"

# bubblewrap isolates every kernel that grades a submission (docs/instructors.md): Debian's and Ubuntu's package.
# Without root or apt it says the one command that installs it; the grader then refuses to grade, and says why.
bubblewrap:
	@[ "$$(uname -s)" = Linux ] || exit 0; command -v bwrap >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
		echo "make bubblewrap: bubblewrap is missing; install it with: sudo apt-get install bubblewrap"; exit 0; fi; \
	command -v apt-get >/dev/null 2>&1 || { echo "make bubblewrap: no apt-get here; install bubblewrap with your \
	package manager (dnf install bubblewrap, pacman -S bubblewrap)"; exit 0; }; \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq bubblewrap >/dev/null; } \
		|| echo "make bubblewrap: apt-get could not install it; install it with: sudo apt-get install bubblewrap"

# Slurm and munge from Debian, for the test that grades a class as array jobs on a real one-node cluster
# (tests/slurm_cluster.py starts it in a temporary folder). Without root or apt that test is skipped, saying why.
slurm:
	@command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
		echo "make slurm: cannot install Slurm without root; the Slurm test will be skipped"; exit 0; fi; \
	command -v apt-get >/dev/null 2>&1 || { echo "make slurm: no apt-get here; the Slurm test will be skipped"; exit 0; }; \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq slurm-wlm munge >/dev/null; } \
		|| echo "make slurm: apt-get could not install slurm-wlm and munge; the Slurm test will be skipped"

# Debian's docker.io, for the test that runs Gradescope's autograder in real containers with Docker's default seccomp
# profile (tests/docker_daemon.py starts a private dockerd in a temporary folder). Without root or apt it is skipped.
docker:
	@command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
		echo "make docker: cannot install Docker without root; the container test will be skipped"; exit 0; fi; \
	command -v apt-get >/dev/null 2>&1 || { echo "make docker: no apt-get here; the container test will be skipped"; exit 0; }; \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker.io >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker.io >/dev/null; } \
		|| echo "make docker: apt-get could not install docker.io; the container test will be skipped"

# Gradescope's autograder in real Docker containers (default seccomp profile, not privileged), where bubblewrap
# cannot work and container mode takes over: the reference solution, a wrong answer and a hostile notebook.
# Skips, saying why, where Docker cannot be installed or started.
docker-check: setup docker
	$(BIN)/python -m pytest tests/test_autograde_container.py

clean:
	rm -rf $(VENV) submitted autograded feedback gradebook.db exchange
