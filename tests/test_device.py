import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from resnet_course import cores
from resnet_course import device as runtime


def test_choose_device_defaults_to_cuda_when_present_else_cpu(monkeypatch):
    monkeypatch.delenv(runtime.DEVICE_VARIABLE, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.choose_device().type == expected


def test_environment_variable_overrides_device(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_VARIABLE, "cpu")
    assert runtime.choose_device() == torch.device("cpu")
    monkeypatch.setenv(runtime.DEVICE_VARIABLE, "meta")
    assert runtime.choose_device() == torch.device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_missing_cuda_explains(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_VARIABLE, "cuda")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        runtime.choose_device()


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_from_environment(monkeypatch, restore_threads):
    monkeypatch.setenv(runtime.THREADS_VARIABLE, "1")
    assert runtime.set_threads() == 1
    assert torch.get_num_threads() == 1


def test_default_threads_never_exceed_usable_cores(monkeypatch, restore_threads):
    monkeypatch.delenv(runtime.THREADS_VARIABLE, raising=False)
    count = runtime.set_threads()
    assert 1 <= count <= min(runtime.available_cores(), runtime.MAX_DEFAULT_THREADS)
    assert torch.get_num_threads() == count


@pytest.mark.parametrize("raw", ["two", "0", "-3"])
def test_bad_thread_counts_are_refused(monkeypatch, restore_threads, raw):
    monkeypatch.setenv(runtime.THREADS_VARIABLE, raw)
    with pytest.raises(ValueError, match="thread"):
        runtime.set_threads()


def test_cgroup_quota_caps_cores(monkeypatch):
    monkeypatch.setattr(cores, "cgroup_cpu_quota", lambda: 1)
    assert runtime.available_cores() == 1


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 cores of quota: two threads may run
    ({"cpu.max": "100000 100000\n"}, 1),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu.max": "garbage"}, None),
    ({}, None),
])
def test_cgroup_quota_is_read_from_v2_then_v1(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cores.cgroup_cpu_quota(root=str(tmp_path)) == expected


def test_the_grader_counts_cores_without_importing_torch():
    probe = ("import sys; import autograde.run, resnet_course.cores; "
             "assert autograde.run.available_cores is resnet_course.cores.available_cores; "
             "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_package_names_load_on_first_use():
    import resnet_course
    assert set(resnet_course.__all__) <= set(dir(resnet_course))
    assert all(callable(getattr(resnet_course, name)) for name in resnet_course.__all__)
    with pytest.raises(AttributeError, match="no attribute 'ResidualBlock'"):
        resnet_course.ResidualBlock


def test_seed_everything_repeats_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    runtime.seed_everything(7)
    first = draw()
    runtime.seed_everything(7)
    second = draw()
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])
    runtime.seed_everything(8)
    assert not torch.equal(draw()[2], first[2])


def test_start_lesson_prints_the_device(capsys, monkeypatch, restore_threads):
    monkeypatch.setenv(runtime.DEVICE_VARIABLE, "cpu")
    assert runtime.start_lesson(seed=3) == torch.device("cpu")
    assert "Running on cpu" in capsys.readouterr().out
