"""The kernel's side of a judged test: run one probe and send back what it observed, as plain data.

A probe is a function of an assignment's ``grading/probes.py`` (see docs/instructors.md, "Writing probes and
judges"): ``probe(namespace, seed) -> dict``. It calls the student's code, found in the notebook's *namespace*,
on inputs it draws from *seed*, and returns what it saw: numbers, strings, lists, dicts, arrays. The grader sends
the probe module's source with a kernel's first probe and a fresh seed with every probe (:func:`run_probe`), so
nothing here is a secret and nothing here decides a grade: whatever this module sends, the grader's judge
(:mod:`autograde.judging`) compares with what it computes itself. A student's code can replace all of this; it
then only loses its own points.

Arrays travel as base64 of their bytes with their dtype and shape (never pickled); the whole answer is one
``display_data`` message of the MIME type :data:`MIME`, at most ``limit`` bytes of JSON.
"""
from __future__ import annotations

import base64
import contextlib
import json
import math
import types
import warnings

MIME = "application/vnd.autograde.observations+json"
MAX_TEXT = 2000  # characters of an exception's message that travel


class Stop(Exception):
    """The student's code failed while a probe called it: the probe ends, and says what it was doing."""

    def __init__(self, what: str, error: BaseException):
        super().__init__(what)
        self.record = stop_record(what, error)
        if isinstance(error, NameError) and getattr(error, "name", None):
            self.record["undefined"] = error.name


class ProbeError(LookupError):
    """The probe to run is not in the kernel."""


def stop_record(what: str | None, error: BaseException) -> dict:
    """What the judge is told of *error*, raised while the probe was doing *what* (None: the probe itself). Its
    message is the student's code too, which may raise in turn."""
    try:
        message = str(error)[:MAX_TEXT]
    except BaseException:  # noqa: BLE001 - an exception whose __str__ raises still stops the probe
        message = "(its message could not be read)"
    return {"what": what, "type": type(error).__name__, "message": message}


def attempt(what: str, function, *args, **kwargs):
    """``function(*args, **kwargs)``; any exception it raises ends the probe with :class:`Stop` (*what* it was)."""
    try:
        return function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - whatever the student's code raised, the judge says so
        raise Stop(what, error) from None


def need(namespace: dict, name: str):
    """The notebook's *name*; a probe stops when the notebook never defined it."""
    if name not in namespace:
        raise Stop(name, NameError(f"name {name!r} is not defined", name=name))
    return namespace[name]


def encode(value, depth: int = 0):
    """*value* as JSON-ready data; tensors and numpy arrays as {"__array__": dtype, "shape", "data": base64}."""
    if depth > 32:
        raise ValueError("observations nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}  # JSON has no NaN or infinity
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(key): encode(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(item, depth + 1) for item in value]
    array = _as_numpy(value)
    if array is None:
        return {"__repr__": repr(value)[:200]}
    if array.ndim == 0:
        return encode(array.item(), depth + 1)
    return {"__array__": array.dtype.str, "shape": list(array.shape),
            "data": base64.b64encode(array.tobytes()).decode("ascii")}


def _as_numpy(value):
    import numpy as np

    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, on any real device
        value = value.detach().cpu()
        if value.is_floating_point() and value.element_size() < 4:
            value = value.float()  # half precision, bfloat16: numpy has no bfloat16
        value = value.numpy()
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        return None
    if value.dtype.kind == "f":
        return value.astype("<f4" if value.dtype.itemsize <= 4 else "<f8")
    if value.dtype.kind in "iu":
        return value.astype("<i8")
    if value.dtype.kind == "b":
        return value.astype("|b1")
    return None


def observe(probes: types.ModuleType, name: str, namespace: dict, seed: int):
    """What the probe *name* of the module *probes* observed in *namespace*, encoded for JSON. A probe module may
    define ``probing()``, a context manager every probe then runs in (to pin a library's defaults, say)."""
    with warnings.catch_warnings(), getattr(probes, "probing", contextlib.nullcontext)():
        warnings.simplefilter("ignore")  # a warning is the student's business, not the probe's
        try:  # encoding calls the student's objects too (their __repr__, a tensor subclass's .numpy())
            return encode(getattr(probes, name)(namespace, seed))
        except Stop as stop:
            return {"stopped": stop.record}
        except Exception as error:  # noqa: BLE001 - a probe that broke on odd student objects: the judge says so
            return {"stopped": stop_record(None, error)}


_MODULES: dict[str, types.ModuleType] = {}  # the probe modules this kernel was sent, by their digest


def probes_module(digest: str, source: str | None = None) -> types.ModuleType:
    """The probe module of *digest*, made from *source* when it comes (with a kernel's first probe only: compiling
    it again for every probe, and IPython's input transformers reading it in every probe's cell, cost more than
    most probes)."""
    if source is not None and digest not in _MODULES:
        module = types.ModuleType("autograde_probes")
        exec(compile(source, "<probes>", "exec"), module.__dict__)  # noqa: S102 - the instructor's probe code
        _MODULES[digest] = module
    if digest not in _MODULES:
        raise ProbeError("the grader's probes are gone from the kernel: the notebook's code removed them")
    return _MODULES[digest]


def run_probe(name: str, seed: int, limit: int, digest: str, source: str | None = None) -> None:
    """Run the probe *name* of the probe module *digest* (made from *source*, when sent) on the notebook's
    namespace, and publish what it observed: always something, a stop at least, whatever the student's code
    raised (an interrupt past the time limit included: the grader then says so instead)."""
    from IPython import get_ipython
    from IPython.display import publish_display_data

    try:
        observed = observe(probes_module(digest, source), name, get_ipython().user_ns, seed)
        size = len(json.dumps(observed))
    except BaseException as error:  # noqa: BLE001 - SystemExit, GeneratorExit... from the student's code: the
        observed, size = {"stopped": stop_record(None, error)}, 0  # judge must hear that the probe ran and stopped
    publish_display_data({MIME: observed if size <= limit else {"oversized": size}})
