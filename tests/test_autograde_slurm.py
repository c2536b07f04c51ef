"""`python -m autograde slurm` on a real one-node Slurm cluster, its scripts without one, and the Kubernetes example.

The cluster tests start munged, slurmctld and slurmd in a temporary folder (tests/slurm_cluster.py), grade a
small class of the tiny course in 2 shards with --wait, and compare the merge with one unsharded run. They skip,
saying why, where Slurm is not installed (`make slurm`) or the tests do not run as root.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from autograde_fixtures import MINI, REPO, fill, make_course, release_and_answers, run_cli
from slurm_cluster import DAEMONS, one_node_cluster, unavailable

pytestmark = pytest.mark.slow  # a Slurm cluster, and classes graded through the CLI on it
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="grading uses Linux features")
WRONG = "def double(x):\n    return 3 * x\n"
SHARDS = 2
# With 2 shards, part_of() puts correct, wrong and broken in part 0, unanswered and alice in part 1.
PART_ONE = ("alice", "unanswered")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def submissions(course, tmp_path_factory):
    """A small class: correct, wrong, unanswered and broken notebooks, in a folder whose name has a space."""
    release, answers = release_and_answers(course)
    folder = tmp_path_factory.mktemp("class") / "class of 2026"
    folder.mkdir()
    for student, nb in {"correct": fill(release, answers), "alice": fill(release, answers),
                        "wrong": fill(release, {"double": WRONG}), "unanswered": release}.items():
        nbformat.write(nb, folder / f"{student}.ipynb")
    (folder / "broken.ipynb").write_text('{"cells": [', encoding="utf-8")
    return folder


# -- the scripts, without a cluster --------------------------------------------------------------------------------

def _dry_run(tmp_path, course, *options):
    subs = tmp_path / "my submissions"
    subs.mkdir(exist_ok=True)
    out = tmp_path / "grading out"
    done = run_cli("slurm", subs, "--assignment", MINI, "--course", course, "--out", out, "--dry-run", *options)
    assert done.returncode == 0, done.stderr
    return subs, out, done.stdout


def _run_script(script: Path, task: str) -> list[str]:
    """The command the script would run as array task *task*, as the shell splits it (exec swapped for printf)."""
    text = script.read_text().replace("\nexec ", "\nprintf '%s\\0' ")
    done = subprocess.run(["bash", "-c", text], env=dict(os.environ, SLURM_ARRAY_TASK_ID=task, SLURM_CPUS_PER_TASK="3"),
                          capture_output=True, text=True, check=True)
    return done.stdout.split("\0")[:-1]


def test_dry_run_writes_an_array_job_and_a_merge(tmp_path, course):
    subs, out, printed = _dry_run(tmp_path, course, "--shards", "3", "--cpus-per-task", "2", "--mem-per-task", "5000",
                                  "--time", "01:30:00", "--partition", "teaching", "--sbatch-option=--qos=short",
                                  "--timeout", "20", "--similarity")
    grade, merge = (out / "slurm" / "grade.sbatch").read_text(), (out / "slurm" / "merge.sbatch").read_text()
    for line in ("#SBATCH --array=0-2", "#SBATCH --cpus-per-task=2", "#SBATCH --mem=5000", '#SBATCH --time="01:30:00"',
                 '#SBATCH --partition="teaching"', "#SBATCH --qos=short",
                 f'#SBATCH --output="{out}/slurm/logs/grade-%A_%a.log"'):
        assert line in grade.splitlines(), line
    assert "--array" not in merge and "#SBATCH --cpus-per-task=1" in merge
    assert f'#SBATCH --output="{out}/slurm/logs/merge-%j.log"' in merge.splitlines()
    # Nothing was submitted: the two commands are printed, the merge after the whole array.
    assert "sbatch --parsable" in printed and "--dependency=afterok:" in printed
    assert not (out / "grades.csv").exists()


def test_the_scripts_run_the_cli_with_the_right_words(tmp_path, course):
    from autograde.cli import build_parser

    subs, out, _ = _dry_run(tmp_path, course, "--shards", "3", "--memory", "1024", "--lms", "plain", "--similarity")
    argv = _run_script(out / "slurm" / "grade.sbatch", "1")
    assert argv[:3] == [sys.executable, "-m", "autograde"]
    args = build_parser().parse_args(argv[3:])
    assert (args.command, args.submissions, args.out) == ("grade", subs, out / "shards" / "1")
    assert (str(args.shard), args.jobs, args.memory, args.lms, args.course) == ("1/3", 3, 1024, "plain", course)
    assert args.no_progress and not args.similarity  # similarity is computed over the whole class, by the merge
    argv = _run_script(out / "slurm" / "merge.sbatch", "")
    args = build_parser().parse_args(argv[3:])
    assert args.command == "merge" and args.similarity and (args.out, args.course) == (out, course)
    assert args.shards == [out / "shards" / str(i) for i in range(3)]


def test_the_printed_commands_submit_the_merge_after_the_array(tmp_path, course):
    _, out, printed = _dry_run(tmp_path, course, "--shards", "2")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text('#!/bin/sh\nprintf "%s|" "$@" >> "$SBATCH_LOG"; echo >> "$SBATCH_LOG"\n'
                                 'echo "42;cluster"\n')
    (fake / "sbatch").chmod(0o755)
    log = tmp_path / "sbatch.log"
    subprocess.run(["bash", "-c", printed], check=True,
                   env=dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", SBATCH_LOG=str(log)))
    first, second = log.read_text().splitlines()
    assert first == f"--parsable|{out}/slurm/grade.sbatch|"
    assert second == f"--parsable|--dependency=afterok:42|{out}/slurm/merge.sbatch|"


def test_bad_slurm_options_are_refused(tmp_path, course):
    subs = tmp_path / "subs"
    subs.mkdir()
    common = ["slurm", subs, "--assignment", MINI, "--course", course, "--out", tmp_path / "out", "--dry-run"]
    assert run_cli(*common, "--shards", "0").returncode == 2
    done = run_cli(*common, "--shards", "2", "--sbatch-option", "account=x")
    assert done.returncode == 1 and "--sbatch-option" in done.stderr


# -- a real cluster ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = unavailable()
    if why:
        pytest.skip(why)
    from autograde.sandbox.bwrap import isolation_problem

    if isolation_problem():
        pytest.skip(f"grading needs bubblewrap: {isolation_problem()}")
    folder = tmp_path_factory.mktemp("slurm")  # short: munge's socket path is limited
    with one_node_cluster(folder) as env:
        pids = [int((folder / f"{name}.pid").read_text().split()[0]) for name in DAEMONS]
        yield {"SLURM_CONF": env["SLURM_CONF"], "PYTHONPATH": str(REPO)}
    assert not [pid for pid in pids if _alive(pid)], "the Slurm daemons outlived the cluster"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _slurm(course, submissions, out, cluster):
    return run_cli("slurm", submissions, "--assignment", MINI, "--course", course, "--out", out, "--shards", SHARDS,
                   "--cpus-per-task", 1, "--memory", 1024, "--time", "00:10:00", "--wait", env=cluster)


def _records(job_id: str, cluster) -> list[dict[str, str]]:
    shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=dict(os.environ, **cluster),
                           capture_output=True, text=True, check=True).stdout
    return [dict(re.findall(r"(?:^|\s)([\w/:]+)=(\S*)", line)) for line in shown.splitlines()]


@pytest.fixture(scope="module")
def sharded(cluster, course, submissions, tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded") / "grading out"
    done = _slurm(course, submissions, out, cluster)
    return out, done


@linux_only
def test_slurm_grades_the_class_in_an_array_and_merges(sharded, cluster):
    out, done = sharded
    assert done.returncode == 0, done.stdout + done.stderr
    array_id, merge_id = re.search(r"array job (\d+) .* merge job (\d+)", done.stdout).groups()
    tasks = _records(array_id, cluster)
    assert sorted(t["ArrayTaskId"] for t in tasks) == [str(i) for i in range(SHARDS)]
    assert {t["JobState"] for t in tasks} == {"COMPLETED"}
    # The per-task resources: --cpus-per-task 1, and memory 1 x --memory 1024 + 1024 for the warm kernel server.
    assert {(t["CPUs/Task"], t["MinMemoryNode"]) for t in tasks} == {("1", "2G")}
    (merge,) = _records(merge_id, cluster)
    assert merge["JobState"] == "COMPLETED" and merge["Dependency"] == "(null)"
    for index in range(SHARDS):
        manifest = json.loads((out / "shards" / str(index) / "shard.json").read_text())
        assert manifest["finished"] and manifest["shard"] == f"{index}/{SHARDS}"
    logs = sorted(path.name for path in (out / "slurm" / "logs").iterdir())
    assert logs == [f"grade-{array_id}_{i}.log" for i in range(SHARDS)] + [f"merge-{merge_id}.log"]


@linux_only
def test_the_merge_equals_one_unsharded_run(sharded, course, submissions, tmp_path):
    out, _ = sharded
    whole = tmp_path / "whole"
    done = run_cli("grade", submissions, "--assignment", MINI, "--course", course, "--out", whole, "--memory", 1024,
                   "--no-progress")
    assert done.returncode == 0, done.stderr
    assert (out / "grades.csv").read_bytes() == (whole / "grades.csv").read_bytes()
    pages = {path.name: path.read_bytes() for path in (out / "feedback").iterdir()}
    assert pages == {path.name: path.read_bytes() for path in (whole / "feedback").iterdir()}
    assert len(pages) == 5


@linux_only
def test_a_failed_shard_cancels_the_merge_and_is_named(cluster, course, submissions, tmp_path):
    out = tmp_path / "failing"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "1").write_text("a file where shard 1's folder must go: its task fails")
    done = _slurm(course, submissions, out, cluster)
    assert done.returncode == 1, done.stdout + done.stderr
    array_id, merge_id = re.search(r"array job (\d+) .* merge job (\d+)", done.stdout).groups()
    assert f"shard 1/{SHARDS} (array task {array_id}_1): FAILED" in done.stderr
    assert f"grade-{array_id}_1.log" in done.stderr and "sbatch --array=K" in done.stderr
    assert f"shard 1/{SHARDS} is missing; its students: {', '.join(PART_ONE)}" in done.stderr
    assert "shard 0/" not in done.stderr
    (merge,) = _records(merge_id, cluster)
    assert merge["JobState"] == "CANCELLED"
    assert not (out / "grades.csv").exists()
    assert json.loads((out / "shards" / "0" / "shard.json").read_text())["finished"]


# -- the Kubernetes example (linted, never run) ---------------------------------------------------------------------

K8S_EXAMPLE = REPO / "docs" / "kubernetes-indexed-job.yaml"


def _pod_command(job: dict, env: dict[str, str]) -> list[str]:
    """The words the pod's shell runs (exec swapped for printf), with *env* as the pod's environment."""
    (container,) = job["spec"]["template"]["spec"]["containers"]
    shell, flag, script = container["command"]
    assert (shell, flag) == ("/bin/sh", "-c") and script.startswith("exec python -m autograde ")
    done = subprocess.run(["sh", "-c", "printf '%s\\0' " + script[len("exec "):]], env=dict(os.environ, **env),
                          capture_output=True, text=True, check=True)
    return done.stdout.split("\0")[:-1]


def _mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_the_kubernetes_example_is_an_indexed_job_running_the_cli():
    from autograde.cli import build_parser

    storage, grade, merge = yaml.safe_load_all(K8S_EXAMPLE.read_text())
    assert (storage["apiVersion"], storage["kind"]) == ("v1", "PersistentVolumeClaim")
    assert "ReadWriteMany" in storage["spec"]["accessModes"]
    for job in (grade, merge):
        assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
        pod = job["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and job["metadata"]["name"]
        (container,) = pod["containers"]
        assert container["image"] and container["resources"]["requests"] == container["resources"]["limits"]
        (volume,) = pod["volumes"]
        assert volume["persistentVolumeClaim"]["claimName"] == storage["metadata"]["name"]
        assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/data"}]
    spec = grade["spec"]
    assert spec["completionMode"] == "Indexed" and 1 <= spec["parallelism"] <= spec["completions"]
    shards = spec["completions"]
    argv = _pod_command(grade, {"JOB_COMPLETION_INDEX": "2"})
    assert argv[:3] == ["python", "-m", "autograde"]
    args = build_parser().parse_args(argv[3:])
    assert args.command == "grade" and str(args.shard) == f"2/{shards}"
    assert args.out == Path("/data/grading/shards/2") and str(args.submissions).startswith("/data/")
    requests = grade["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert args.jobs == int(requests["cpu"]) and args.no_progress
    assert _mebibytes(requests["memory"]) >= args.jobs * args.memory + 1024  # as `autograde slurm` asks
    args = build_parser().parse_args(_pod_command(merge, {})[3:])
    assert args.command == "merge" and args.out == Path("/data/grading")
    assert args.shards == [Path(f"/data/grading/shards/{i}") for i in range(shards)]
    assert "completionMode" not in merge["spec"]
