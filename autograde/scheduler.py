"""Grade jobs in parallel worker processes, with a progress bar, an ETA and hard deadlines.

Workers are *forked* from the grading run's main process, which has already imported nbgrader, nbconvert and
jupyter_client (importing nbgrader alone costs ~2.5 CPU-seconds: a fresh interpreter per submission would cost
more than the grading). The main process therefore keeps no threads (tqdm's monitor thread is off) and no open
database or zmq context while it forks.

Each worker grades one submission and writes its :class:`~autograde.results.Result` as JSON. The scheduler
enforces a hard deadline per worker (the per-cell timeouts make it unlikely to be reached), kills the whole
process tree of a worker that misses it, grades again once a worker that died without a result, and kills
orphans that land on the main process (a subreaper). Ctrl-C stops everything cleanly.
"""
from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections import Counter, deque
from pathlib import Path

import psutil
from tqdm import tqdm

from . import status as st
from .results import Result, atomic_write
from .worker import Job, Settings, fail, run_job

tqdm.monitor_interval = 0  # no monitor thread: this process forks


def _worker_main(job: Job, template, settings: Settings, result_path: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # keep the terminal for the progress bar; the job has its own log
        os.dup2(devnull, fd)
    atomic_write(Path(result_path), run_job(job, template, settings).to_json())


def kill_tree(pid: int) -> None:
    """SIGKILL *pid* and everything below it."""
    try:
        process = psutil.Process(pid)
        family = process.children(recursive=True) + [process]
    except psutil.Error:
        return
    for member in family:
        try:
            member.kill()
        except psutil.Error:
            pass


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
        self.results_dir = Path(settings.run_root) / "results"

    def run(self, jobs: list[Job], on_result=None) -> list[Result]:
        self.pending, self.running, self.results = deque(jobs), {}, []
        self.attempts, self.counts, self.on_result = Counter(), Counter(), on_result
        self.results_dir.mkdir(parents=True, exist_ok=True)
        gc.freeze()  # what the workers inherit stays out of their garbage collections (and in shared memory pages)
        self.bar = tqdm(total=len(jobs), unit="nb", desc="grading", disable=not self.progress or not jobs,
                        file=sys.stderr, dynamic_ncols=True, mininterval=0.5, smoothing=0.1)
        try:
            while self.pending or self.running:
                while self.pending and len(self.running) < self.jobs:
                    self._start(self.pending.popleft())
                for sentinel in multiprocessing.connection.wait(list(self.running), timeout=0.5):
                    self._collect(sentinel)
                self._enforce_deadlines()
                self._kill_orphans()
        except KeyboardInterrupt:
            for process, *_ in self.running.values():
                kill_tree(process.pid)
            raise
        finally:
            self.bar.close()
            gc.unfreeze()
        return self.results

    def _start(self, job: Job) -> None:
        self.attempts[job.key] += 1
        result_path = self.results_dir / f"{job.key}.json"
        result_path.unlink(missing_ok=True)
        process = self.context.Process(target=_worker_main, args=(job, self.template, self.settings, str(result_path)),
                                       name=f"autograde-{job.key}", daemon=False)
        process.start()
        self.running[process.sentinel] = (process, job, time.monotonic(), result_path)

    def _collect(self, sentinel) -> None:
        process, job, _started, result_path = self.running.pop(sentinel)
        process.join()
        try:
            result = Result.from_json(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            if self.attempts[job.key] < 2:
                self.pending.appendleft(job)  # died without a result (killed from outside?): once more
                return
            result = self._failed(job, f"the grading process died (exit code {process.exitcode})")
        self._finish(result)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for sentinel, (process, job, started, _path) in list(self.running.items()):
            if now - started > self.deadline_s:
                kill_tree(process.pid)
                process.join()
                self.running.pop(sentinel)
                self._finish(self._failed(job, f"grading took longer than {self.deadline_s:.0f} s and was stopped",
                                          st.TIMED_OUT))

    def _finish(self, result: Result) -> None:
        self.results.append(result)
        self.counts[result.status] += 1
        self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())), refresh=False)
        self.bar.update(1)
        if self.on_result:
            self.on_result(result)

    def _failed(self, job: Job, why: str, status: str = st.GRADER_ERROR) -> Result:
        return fail(job.new_result(self.template, self.settings), self.template, status, why)

    def _kill_orphans(self) -> None:
        """Processes re-parented to this one (descendants of a worker that had to be killed)."""
        workers = {process.pid for process, *_ in self.running.values()} | self.keep_alive
        for child in psutil.Process().children():
            if child.pid in workers:
                continue
            kill_tree(child.pid)
            try:
                os.waitpid(child.pid, os.WNOHANG)  # not a worker: nobody else will reap it
            except ChildProcessError:
                pass
