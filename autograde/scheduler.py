"""Grade jobs in parallel worker processes, with a progress bar, an ETA and hard deadlines.

Workers are *forked* from the grading run's main process, which has already imported nbgrader,
nbconvert and jupyter_client (importing nbgrader alone costs ~2.5 CPU-seconds: a fresh
interpreter per submission would cost more than the grading). The main process therefore keeps no
threads (tqdm's monitor thread is off) and no open database or zmq context while it forks.

Each worker grades one submission and writes its result as JSON. The scheduler enforces a hard
deadline per worker (the per-cell timeouts make it unlikely to be reached), kills the whole process
tree of a worker that misses it, retries once a worker that died without a result, and kills orphans
that land on the main process (it is a subreaper too). Ctrl-C stops everything cleanly.
"""
from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections import Counter, deque
from pathlib import Path

from tqdm import tqdm

from . import status as st
from .report import atomic_write
from .sandbox import kill_orphans, kill_tree, reap_children
from .worker import Job, Settings, fail, new_result, run_job

tqdm.monitor_interval = 0  # no monitor thread: this process forks


def _worker_main(job: Job, template, settings: Settings, result_path: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # keep the terminal for the progress bar; the job has its own log
        os.dup2(devnull, fd)
    result = run_job(job, template, settings)
    atomic_write(Path(result_path), json.dumps(result, ensure_ascii=False))


class Scheduler:
    def __init__(self, template, settings: Settings, jobs: int, deadline_s: float, progress: bool = True,
                 keep_alive=()):
        self.template = template
        self.settings = settings
        self.jobs = max(1, jobs)
        self.deadline_s = deadline_s
        self.progress = progress
        self.keep_alive = set(keep_alive)  # our own children that are not workers (the warm kernel server)
        self.context = multiprocessing.get_context("fork")

    def run(self, jobs: list[Job], on_result=None) -> list[dict]:
        pending = deque(jobs)
        running: dict = {}  # sentinel -> (process, job, started, result_path)
        results = []
        counts = Counter()
        results_dir = Path(self.settings.jobs_dir) / "results"
        results_dir.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=len(jobs), unit="nb", desc="grading", disable=not self.progress or not jobs,
                   file=sys.stderr, dynamic_ncols=True, mininterval=0.5, smoothing=0.1)
        attempts = Counter()

        def start(job: Job):
            attempts[job.key] += 1
            result_path = str(results_dir / f"{job.key}.json")
            if os.path.exists(result_path):
                os.unlink(result_path)
            process = self.context.Process(target=_worker_main, args=(job, self.template, self.settings, result_path),
                                           name=f"autograde-{job.key}", daemon=False)
            process.start()
            running[process.sentinel] = (process, job, time.monotonic(), result_path)

        def finish(result: dict):
            results.append(result)
            counts[result["status"]] += 1
            bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(counts.items())), refresh=False)
            bar.update(1)
            if on_result:
                on_result(result)

        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    start(pending.popleft())
                ready = multiprocessing.connection.wait(list(running), timeout=0.5)
                for sentinel in ready:
                    process, job, started, result_path = running.pop(sentinel)
                    process.join()
                    result = _read(result_path)
                    if result is None and attempts[job.key] < 2:
                        pending.appendleft(job)  # died without a result (killed from outside?): once more
                        continue
                    finish(result or _failed(job, self.template, f"the grading process died (exit code {process.exitcode})"))
                now = time.monotonic()
                for sentinel, (process, job, started, result_path) in list(running.items()):
                    if now - started > self.deadline_s:
                        kill_tree(process.pid)
                        process.join()
                        running.pop(sentinel)
                        result = _failed(job, self.template, f"grading took longer than {self.deadline_s:.0f} s and was stopped",
                                         status=st.TIMED_OUT)
                        finish(result)
                self._sweep_orphans({p.pid for p, *_ in running.values()})
        except KeyboardInterrupt:
            for process, *_ in running.values():
                kill_tree(process.pid)
            raise
        finally:
            bar.close()
        return results

    def _sweep_orphans(self, workers: set[int]) -> None:
        """Kill processes re-parented to us (descendants of a worker we had to kill)."""
        kill_orphans(workers | self.keep_alive)
        reap_children()


def _read(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _failed(job: Job, template, why: str, status: str = st.GRADER_ERROR) -> dict:
    result = fail(new_result(job, template), job, template, status, why)
    result["status"] = status
    return result
