"""The grader's side of a judged test: read what a probe observed, and judge it outside the student's process.

An assignment is judged when its source folder holds ``grading/probes.py`` and ``grading/judges.py`` (the
:class:`Grading`). For every graded test cell (by its nbgrader ``grade_id``) ``probes.py`` defines a probe, which
runs in the student's kernel (:mod:`autograde.probing`), and ``judges.py`` a judge of the same name, which runs in
the grader's process::

    def test_make_shortcut_identity(student, reference, seed):
        y = student.tensor("output")                       # what the probe saw in the student's kernel
        check(torch.equal(y, inputs(seed)), "make_shortcut(16, 16) should return its input unchanged")
        return "the identity shortcut is right"            # the message a passed test shows

*student* and *reference* are the :class:`Observations` of the probe in the student's kernel and in a trusted
kernel that ran the source notebook's own answers, with the same *seed*. A judge fails a test with
``AssertionError`` (:func:`check`); only a judge that returns gives credit. A student's code can send anything in
place of its observations, so a judge trusts none of them: it recomputes what it compares with, from the seed
and from values the probe set itself, and it judges values that only a working answer produces.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import importlib
import importlib.util
import json
import math
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from . import AutogradeError
from .probing import MIME, observe

PROBES, JUDGES = "probes.py", "judges.py"
FOLDER = "grading"  # beside the assignment's notebook in source/<assignment>/; never released (nbgrader_config.py)
MAX_ELEMENTS = 4_000_000  # of all the arrays of one observation together
MAX_MESSAGE = 4000  # characters of a verdict's message
DTYPES = {"<f4": "float32", "<f8": "float64", "<i8": "int64", "|b1": "bool"}

__all__ = ["MIME", "Grading", "GradingError", "Malformed", "Observations", "Verdict", "check", "decode"]


class GradingError(AutogradeError, RuntimeError):
    """An assignment's probes and judges cannot grade it (a configuration error: the instructor's to fix)."""


class Malformed(AssertionError):
    """The observations are not what the probe sends: missing, of another type, or not decodable."""


def check(condition, message: str) -> None:
    """Fail the test with *message* unless *condition* holds (an ``assert`` that ``python -O`` keeps)."""
    if not condition:
        raise AssertionError(message)


class Repr(str):
    """The text form of an object the probe could not send as data (a student's function returned a module)."""


def decode(value, budget: list[int] | None = None, depth: int = 0):
    """What :func:`autograde.probing.encode` sent, with arrays as numpy arrays; :class:`Malformed` otherwise."""
    budget = [MAX_ELEMENTS] if budget is None else budget
    if depth > 32:
        raise Malformed("observations nested too deeply")
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, list):
        return [decode(item, budget, depth + 1) for item in value]
    if not isinstance(value, dict):
        raise Malformed(f"an observation of type {type(value).__name__}")
    if "__array__" in value:
        return _array(value, budget)
    if set(value) == {"__float__"} and value["__float__"] in ("nan", "inf", "-inf"):
        return float(value["__float__"])
    if set(value) == {"__repr__"} and isinstance(value["__repr__"], str):
        return Repr(value["__repr__"])
    return {str(key): decode(item, budget, depth + 1) for key, item in value.items()}


def _array(value: dict, budget: list[int]):
    import numpy as np

    dtype, shape, data = value.get("__array__"), value.get("shape"), value.get("data")
    if dtype not in DTYPES or not isinstance(shape, list) or not isinstance(data, str) or len(shape) > 8 or \
            not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_ELEMENTS for n in shape):
        raise Malformed("an array observation without a valid dtype, shape and data")
    count = math.prod(shape)
    budget[0] -= count
    if budget[0] < 0:
        raise Malformed("array observations larger than the grader accepts")
    if len(data) > 4 * (count * np.dtype(dtype).itemsize + 2) // 3 + 4:  # before decoding it: base64's length
        raise Malformed("an array observation whose data does not fit its shape")
    try:
        raw = base64.b64decode(data, validate=True)
        if len(raw) != count * np.dtype(dtype).itemsize:
            raise ValueError("size")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    except (binascii.Error, ValueError, OverflowError, MemoryError):
        raise Malformed("an array observation whose data is not base64 of its shape") from None


class Observations:
    """What one probe observed, read through typed getters that fail the test (:class:`Malformed`) when a value is
    missing or of another type than the judge expects."""

    def __init__(self, data, where: str = "observations"):
        if not isinstance(data, dict):
            raise Malformed(f"{where} are not a mapping")
        self.data, self.where = data, where

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def _need(self, key: str, kinds, what: str):
        if key not in self.data:
            raise Malformed(f"{self.where} lack {key!r}")
        value = self.data[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _tuple(kinds)):
            raise Malformed(f"{self.where}: {key!r} should be {what}, got {type(value).__name__}")
        return value

    def text(self, key: str) -> str:
        return self._need(key, str, "text")

    def flag(self, key: str) -> bool:
        return self._need(key, bool, "true or false")

    def integer(self, key: str) -> int:
        return self._need(key, int, "an integer")

    def items(self, key: str, count: int | None = None) -> list:
        """The list *key*; of exactly *count* items when given (a probe always sends one per case it tries)."""
        found = self._need(key, list, "a list")
        if count is not None and len(found) != count:
            raise Malformed(f"{self.where}: {key!r} should hold {count} items, got {len(found)}")
        return found

    def sub(self, key: str) -> "Observations":
        return Observations(self._need(key, dict, "a mapping"), f"{self.where}[{key!r}]")

    def each(self, key: str, count: int | None = None) -> list["Observations"]:
        return [Observations(item, f"{self.where}[{key!r}][{i}]") for i, item in enumerate(self.items(key, count))]

    def array(self, key: str, shape: tuple | None = None):
        import numpy as np

        value = self._need(key, np.ndarray, "an array")
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise Malformed(f"{self.where}: {key!r} should have shape {tuple(shape)}, got {tuple(value.shape)}")
        return value

    def tensor(self, key: str, shape: tuple | None = None):
        """The array *key* as a float64 torch tensor (judges compute in float64)."""
        import torch

        return torch.from_numpy(self.array(key, shape).astype("float64"))


def _tuple(kinds) -> tuple:
    return kinds if isinstance(kinds, tuple) else (kinds,)


@dataclass
class Verdict:
    passed: bool
    message: str
    note: str | None = None  # for the instructor: the judge broke, or the observations were not the probe's
    tampered: bool = False  # the observations are in a form no probe sends: the notebook rewrote the probe


class Grading:
    """An assignment's probes and judges (``grading/`` beside its notebook in the source folder)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).resolve()
        self.probes_source = (self.folder / PROBES).read_text(encoding="utf-8")
        self.probes_digest = hashlib.sha256(self.probes_source.encode()).hexdigest()[:16]
        digest = hashlib.sha256(str(self.folder).encode())
        for path in sorted(self.folder.glob("*.py")):  # an edited judge is loaded anew, in a long-lived server too
            digest.update(path.read_bytes())
        package = "_autograde_grading_" + digest.hexdigest()[:16]
        if package not in sys.modules:  # judges.py may import its siblings: `from . import probes`
            module = types.ModuleType(package)
            module.__path__ = [str(self.folder)]
            sys.modules[package] = module
        self.probes = importlib.import_module(f"{package}.probes")
        self.judges = importlib.import_module(f"{package}.judges")

    @classmethod
    def find(cls, folder: Path | str | None, required: bool = False) -> "Grading | None":
        """The grading of *folder* (``source/<assignment>/grading``), or None when it has none; :class:`GradingError`
        instead when it is *required* (``JudgedExecute.require_judges``: the course's test cells are written for
        judges, and would pass by themselves)."""
        if folder and (Path(folder) / JUDGES).is_file():
            return cls(Path(folder))
        if required:
            raise GradingError(f"no probes and judges in {folder}: this course grades only with them "
                               "(JudgedExecute.require_judges)")
        return None

    def check_complete(self, grade_ids) -> None:
        """:class:`GradingError` unless every graded test cell of *grade_ids* has its probe and its judge."""
        missing = [grade_id for grade_id in grade_ids if not callable(getattr(self.probes, grade_id, None))
                   or not callable(getattr(self.judges, grade_id, None))]
        if missing:
            raise GradingError(f"{self.folder} has no probe or no judge for the test cells {', '.join(missing)}: "
                               "every graded test cell of a judged assignment needs both")

    def probe_code(self, grade_id: str, seed: int, limit: int, with_source: bool = True) -> str:
        """The code the kernel runs in place of the test cell *grade_id*; the probes' source goes *with_source*
        (a kernel keeps it from its first probe on)."""
        source = f", {self.probes_source!r}" if with_source else ""
        return ("from autograde.probing import run_probe as __autograde_run_probe\n"
                f"__autograde_run_probe({grade_id!r}, {seed!r}, {limit!r}, {self.probes_digest!r}{source})\n"
                "del __autograde_run_probe\n")

    def observe_here(self, grade_id: str, namespace: dict, seed: int):
        """The probe *grade_id* run in this process on *namespace*, as its observations would arrive from a kernel
        (the course's own tests use it to judge answers without a kernel)."""
        return json.loads(json.dumps(observe(self.probes, grade_id, namespace, seed)))

    def judge(self, grade_id: str, student, reference, seed: int) -> Verdict:
        """The verdict on the student's raw observations of the test *grade_id* (None: none arrived)."""
        try:
            observed = Observations(decode(student), "the observations")
        except Malformed as malformed:
            return Verdict(False, f"the grader could not read this test's observations: {malformed}",
                           note=f"{grade_id}: observations in a form no probe sends ({malformed})", tampered=True)
        try:
            stopped = observed.get("stopped")
            if stopped is not None:
                return Verdict(False, self._stop_message(Observations(stopped, "the probe's stop")))
            check("oversized" not in observed, "the test's observations were larger than the grader accepts")
            message = getattr(self.judges, grade_id)(observed, Observations(decode(reference), "the reference"), seed)
            return Verdict(True, _cut(message or "passed"))
        except AssertionError as failure:
            return Verdict(False, _cut(str(failure) or "failed"))
        except Exception as error:  # noqa: BLE001 - a judge that broke on odd observations gives no credit
            why = f"{type(error).__name__}: {error}"
            return Verdict(False, _cut(f"the grader could not judge this test ({why})"),
                           note=f"the judge of {grade_id} failed: {why}"[:500])

    def rehearse(self, reference: dict, seed: int) -> None:
        """Judge the reference's observations of every test once, dropping the verdicts: what the judges set up on
        first use (lazy imports, torch's first calls, ~1 s) is then done in this process, and in the processes it
        forks to grade."""
        for grade_id, observed in reference.items():
            if callable(getattr(self.judges, grade_id, None)):
                self.judge(grade_id, observed, observed, seed)

    def _stop_message(self, stop: Observations) -> str:
        undefined = stop.get("undefined")
        if isinstance(undefined, str):
            return (f"{undefined} is not defined: the cell that defines it must run from top to bottom without an "
                    "error (the grader runs every cell in order)")
        what = stop.get("what")
        said = f"{stop.text('type')}: {stop.text('message')}"
        hint = getattr(self.judges, "hint", lambda record: "")(stop.data)
        return f"{what} raised {said}{hint}" if isinstance(what, str) else f"the test stopped: {said}{hint}"


def _cut(message: str) -> str:
    message = str(message)
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + " [...]"
