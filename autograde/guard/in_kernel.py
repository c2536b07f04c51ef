"""Runs INSIDE the student's kernel: keeps the graded test cells honest.

nbgrader runs the hidden tests in the same Python process as the student's code, so the student's
code can, before or while a test runs, replace what the test relies on: ``torch.allclose``,
``torch.testing.assert_close``, ``Tensor.__eq__``, the global name ``torch``, a builtin, IPython's
``showtraceback`` or ``run_cell``, the kernel's message ``Session``, input transformers that rewrite
the test's source, trace functions that skip its ``assert`` lines, ``__torch_function__`` modes or
tensor subclasses that make every comparison true, ...

The grader (:mod:`autograde.execute`) sends this file's source as the first cell, before any cell
of the notebook, and ``install()`` takes a snapshot of everything above while it is still pristine.
Around every graded test cell the grader then calls two functions of this module, as ``user_expressions``
(which the kernel evaluates right after a cell and returns in its reply; :mod:`autograde.execute`):

``before(token)``
    puts the snapshot back (undoing any patch made by the student's cells), pins the names the
    instructor's cells bound (``torch``, ``nn``, helpers, test data) and the builtins to their
    recorded values, disables ``__torch_function__`` overrides of tensor subclasses, and returns a
    one-time token.
``after(token)``
    checks that nothing protected changed *while the test ran* (a patch made from inside the
    student's function, called by the test), that no trace/profile hook was installed meanwhile,
    gives the student's own bindings back, and returns the token with its verdict.

The grader only credits a test cell when both tokens arrived and ``after`` found nothing: anything
that stops these calls from running as written (a broken ``__import__``, a fake ``run_cell``, a
dead kernel) makes the test count as failed. Tampering can lower a score, never raise it, unless
it is written against this file in particular; see docs/instructors.md for what is out of reach.

Everything here is written against the standard library only, and keeps private references to the
builtins it uses, so that the student's replacements of builtins do not reach into the checks.
"""
import builtins
import sys
import types
from contextlib import ExitStack as _ExitStack

_MISSING = object()
from operator import eq as _eq, is_ as _is  # noqa: E402
_type, _id, _len, _isinstance = type, id, len, isinstance
_dict, _list, _tuple, _set, _sorted, _getattr, _setattr, _callable, _vars, _hasattr = (
    dict, list, tuple, set, sorted, getattr, setattr, callable, vars, hasattr)
_MethodType, _ModuleType, _FunctionType = types.MethodType, types.ModuleType, types.FunctionType
_MappingProxyType = types.MappingProxyType
_settrace, _gettrace, _setprofile, _getprofile = sys.settrace, sys.gettrace, sys.setprofile, sys.getprofile

# Modules whose top-level names tests rely on. Names added later (lazy submodules) are left alone;
# names changed or deleted are put back.
PROTECTED_MODULES = [
    "builtins", "sys", "math", "operator", "functools", "unittest", "unittest.case",
    "numpy", "numpy.testing", "numpy.linalg",
    "torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.nn.modules.module",
    "torch.testing", "torch.testing._comparison", "torch.linalg", "torch.overrides", "torch.autograd",
    "IPython", "IPython.core.interactiveshell", "ipykernel.zmqshell", "ipykernel.ipkernel",
]
# sys attributes that change legitimately while a kernel runs; they are not compared.
_SYS_VOLATILE = {"last_type", "last_value", "last_traceback", "last_exc", "ps1", "ps2", "ps3", "_git",
                 "exc_info", "tracebacklimit", "argv", "path_importer_cache", "__interactivehook__",
                 "stdout", "stderr", "stdin", "displayhook", "excepthook"}
# sys attributes the guard itself resets before each test.
_SYS_HOOKS = ("stdout", "stderr", "displayhook", "excepthook", "breakpointhook", "unraisablehook")
# Event callbacks from these packages are legitimate (matplotlib's inline backend, widgets, ...).
_TRUSTED_CALLBACK_MODULES = ("IPython", "ipykernel", "matplotlib", "matplotlib_inline", "ipywidgets",
                             "tqdm", "jupyter", "comm")
# Class attributes that Python or libraries add to classes as caches (copy adds __slotnames__).
_CLASS_CACHES = {"__slotnames__", "__doc__", "__weakref__", "_abc_impl", "__abstractmethods__", "__annotations__",
                 "__dict__", "__parameters__", "_is_protocol", "__protocol_attrs__"}
# Audit events that betray an attempt to steer a running test.
_SUSPICIOUS_EVENTS = {"sys.settrace", "sys.setprofile", "sys.monitoring.register_callback",
                      "sys.monitoring.set_events", "sys.monitoring.set_local_events", "sys.addaudithook"}


def _unwrap_callable(fn):
    for _ in range(10):
        if _isinstance(fn, _MethodType):
            fn = fn.__func__
        elif _hasattr(fn, "func") and _type(fn).__name__ == "partial":
            fn = fn.func
        else:
            break
    return fn


def _trusted_callback(fn):
    fn = _unwrap_callable(fn)
    module = _getattr(fn, "__module__", None) or ""
    if not _isinstance(module, str):
        return False
    if _isinstance(fn, _FunctionType):
        filename = fn.__code__.co_filename
        if "ipykernel_" in filename or filename.startswith("<"):
            return False  # defined in a notebook cell, whatever __module__ claims
    return module.split(".")[0] in _TRUSTED_CALLBACK_MODULES


def _trusted_dirs():
    import site

    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:
        pass
    return _tuple(d.rstrip("/") + "/" for d in dirs if d)


_TRUSTED_DIRS = _trusted_dirs()


def _library_code(fn):
    """True for a Python function defined in an installed library (not in the notebook or next to it)."""
    fn = _unwrap_callable(fn)
    code = _getattr(fn, "__code__", None)
    if code is None:
        return False
    filename = code.co_filename
    return filename == "<autograde guard>" or filename.startswith(_TRUSTED_DIRS)


def _benign(now, then):
    """A library re-wrapped a function (``torch._dynamo`` wraps ``torch.manual_seed``; IPython wraps
    ``sys.stdout.write`` for every cell): the wrapper is library code and leads back to the original."""
    if then is _MISSING or now is _MISSING or not _library_code(now):
        return False
    inner = now
    for _ in range(10):
        inner = _getattr(inner, "__wrapped__", None)
        if inner is None:
            return False
        if _same(inner, then):
            return True
    return False


def _relevant(value):
    """What a test can call or look up through: functions, classes, modules, descriptors (properties)."""
    return _callable(value) or _isinstance(value, _ModuleType) or _hasattr(_type(value), "__get__")


def _same(a, b):
    """Identity, except that a bound method fetched twice is a new object each time."""
    if a is b:
        return True
    if _type(a) is _MethodType and _type(b) is _MethodType:
        return a.__func__ is b.__func__ and a.__self__ is b.__self__
    return False


class _Guard:
    def __init__(self, shell, token_prefix, extra_modules=()):
        self.shell = shell
        self.prefix = token_prefix
        self.extra_modules = _list(extra_modules)
        self.in_test = False
        self.events = []
        self.pins = {}  # name -> value bound by the instructor's cells
        self.stash = {}  # name -> the student's value while a test runs
        self.torch_ctx = None
        self._snapshot()
        sys.addaudithook(self._audit)

    # -- snapshot ------------------------------------------------------------------------------
    def _snapshot(self):
        import importlib

        self.modules = {}
        for name in PROTECTED_MODULES + self.extra_modules:
            try:
                module = sys.modules.get(name) or importlib.import_module(name)
            except Exception:  # noqa: BLE001 - e.g. no numpy: nothing to protect
                continue
            # Functions, classes and submodules only: data attributes (counters, caches, settings such
            # as warnings.filters) change legitimately, and a test does not call them.
            saved = {key: value for key, value in _list(_vars(module).items())
                     if _callable(value) or _isinstance(value, _ModuleType)}
            self.modules[name] = (module, _type(module), saved)
        self.sys_modules = {name: entry[0] for name, entry in self.modules.items()}
        self.sys_hooks = {name: _getattr(sys, name, _MISSING) for name in _SYS_HOOKS}
        self.meta_path = _list(sys.meta_path)
        self.path_hooks = _list(sys.path_hooks)
        self._snapshot_shell()
        self._snapshot_classes()

    def _snapshot_shell(self):
        """IPython's and the kernel's machinery: what a test's output and errors travel through."""
        shell = self.shell
        plumbing = [shell, _getattr(shell, "kernel", None), _getattr(shell, "compile", None),
                    _getattr(shell, "events", None), _getattr(shell, "displayhook", None),
                    _getattr(shell, "display_pub", None), _getattr(shell, "display_formatter", None),
                    _getattr(shell, "input_transformer_manager", None), _getattr(shell, "InteractiveTB", None),
                    _getattr(shell, "SyntaxTB", None), _getattr(shell, "builtin_trap", None),
                    _getattr(shell, "display_trap", None), sys.stdout, sys.stderr]
        # The kernel's Session serializes every reply with these (traitlets values: not in the instance's dict).
        session = _getattr(_getattr(shell, "kernel", None), "session", None)
        self.session_codecs = [(session, name, _getattr(session, name)) for name in ("pack", "unpack")
                               if _hasattr(session, name)]
        # The checks' verdicts reach the grader as the text/plain form of a str (user_expressions).
        formatter = _getattr(_getattr(shell, "display_formatter", None), "formatters", {}).get("text/plain")
        plumbing.append(formatter)
        self.str_printers = [(table, key, table.get(key, _MISSING)) for table, key in (
            (_getattr(formatter, "type_printers", {}), str), (_getattr(formatter, "deferred_printers", {}),
                                                              ("builtins", "str")))]
        kernel = _getattr(shell, "kernel", None)
        if kernel is not None:
            for attr in ("session", "iopub_socket", "iopub_thread", "shell_stream", "control_stream"):
                plumbing.append(_getattr(kernel, attr, None))
        self.plumbing = [obj for obj in plumbing if obj is not None]
        # Instance attributes that shadow a method of the class (``shell.showtraceback = ...``).
        self.instance_methods = [(obj, self._shadowing(obj)) for obj in self.plumbing]
        self.shell_attrs = {}
        for attr in ("compile", "displayhook", "display_pub", "display_formatter", "events",
                     "input_transformer_manager", "custom_exceptions", "CustomTB", "InteractiveTB",
                     "SyntaxTB", "excepthook", "kernel", "user_ns", "user_global_ns", "user_module",
                     "builtin_trap", "display_trap", "ast_transformers", "input_transformers_cleanup",
                     "input_transformers_post"):
            if _hasattr(shell, attr):
                self.shell_attrs[attr] = _getattr(shell, attr)
        self.lists = []
        for owner, attr in ((shell, "ast_transformers"), (shell, "input_transformers_cleanup"),
                            (shell, "input_transformers_post")):
            value = _getattr(owner, attr, None)
            if _isinstance(value, _list):
                self.lists.append((value, _list(value)))
        manager = _getattr(shell, "input_transformer_manager", None)
        for attr in ("cleanup_transforms", "line_transforms", "token_transformers"):
            value = _getattr(manager, attr, None)
            if _isinstance(value, _list):
                self.lists.append((value, _list(value)))
        events = _getattr(shell, "events", None)
        self.callbacks = {name: _list(fns) for name, fns in _getattr(events, "callbacks", {}).items()}

    def _snapshot_classes(self):
        """The classes whose methods tests call: the machinery's, torch.nn's and those of imported modules."""
        classes = []
        for obj in self.plumbing:
            classes.extend(_type(obj).__mro__)
        # Classes the tests use: those of torch.nn and of the modules the instructor's cells import.
        for name, (module, _module_type, saved) in self.modules.items():
            if name in ("builtins", "sys", "torch", "numpy", "IPython"):
                continue
            for value in saved.values():
                if _isinstance(value, _type) and (_getattr(value, "__module__", "") or "").split(".")[0] in (
                        name.split(".")[0], "torch"):
                    classes.extend(value.__mro__)
        torch = sys.modules.get("torch")
        if torch is not None:
            classes += _list(torch.Tensor.__mro__) + [torch.nn.Parameter, torch.Size]
            hooks = sys.modules.get("torch.nn.modules.module")
            self.torch_hooks = [(value, _dict(value)) for name, value in _sorted(_vars(hooks).items())
                                if name.startswith("_global_") and _isinstance(value, _dict)] if hooks else []
        else:
            self.torch_hooks = []
        unittest_case = sys.modules.get("unittest.case")
        if unittest_case is not None:
            classes.append(unittest_case.TestCase)
        seen = _set()
        self.classes = []
        for cls in classes:
            if cls is object or _id(cls) in seen:
                continue
            seen.add(_id(cls))
            self.classes.append((cls, _dict(cls.__dict__)))

    @staticmethod
    def _shadowing(obj):
        """The instance's attributes that have the name of a callable class attribute."""
        cls = _type(obj)
        try:
            names = _list(_vars(obj))
        except TypeError:
            return {}
        found = {}
        for name in names:
            attr = _getattr(cls, name, _MISSING)
            if attr is not _MISSING and _callable(attr):
                found[name] = _vars(obj)[name]
        return found

    # -- audit hook ----------------------------------------------------------------------------
    def _audit(self, event, args):
        if self.in_test and event in _SUSPICIOUS_EVENTS:
            self.events.append(event)
        elif self.in_test and event == "object.__setattr__" and args and args[1:2] == ("__class__",):
            if any(args[0] is entry[0] for entry in self.modules.values()):
                self.events.append(f"{_getattr(args[0], '__name__', '?')}.__class__ assignment")

    # -- restore / compare ---------------------------------------------------------------------
    _flat = None

    def _build_flat(self):
        """Every protected module and class entry as parallel tuples, for :meth:`_all_unchanged`."""
        m_dicts, m_keys, m_values, c_proxies, c_keys, c_values = [], [], [], [], [], []
        for module, _module_type, saved in self.modules.values():
            if module is builtins:
                continue  # IPython rebinds some builtins at every cell: compared one by one instead
            current = _vars(module)
            for key, value in saved.items():
                if module is sys and key in _SYS_VOLATILE:
                    continue
                m_dicts.append(current)
                m_keys.append(key)
                m_values.append(value)
        for cls, saved in self.classes:
            proxy = cls.__dict__
            for key, value in saved.items():
                if key not in _CLASS_CACHES and _relevant(value):
                    c_proxies.append(proxy)
                    c_keys.append(key)
                    c_values.append(value)
        # An added entry (a new __eq__ on torch.Tensor) changes the class's size.
        classes = _tuple(cls.__dict__ for cls, _saved in self.classes)
        lengths = _tuple(_len(cls.__dict__) for cls, _saved in self.classes)
        self._flat = (_tuple(m_dicts), _tuple(m_keys), _tuple(m_values), _tuple(c_proxies), _tuple(c_keys),
                      _tuple(c_values), classes, lengths)

    def _all_unchanged(self):
        """True when no protected module or class entry changed, checked in C: this runs ~50 times per notebook."""
        if self._flat is None:
            self._build_flat()
        m_dicts, m_keys, m_values, c_proxies, c_keys, c_values, classes, lengths = self._flat
        if not all(map(_is, map(_dict.get, m_dicts, m_keys), m_values)):
            return False
        if not all(map(_eq, map(_len, classes), lengths)):
            return False
        return all(map(_is, map(_MappingProxyType.get, c_proxies, c_keys), c_values))

    def _differences(self, fix):
        """Protected state that differs from the snapshot; puts it back when *fix*."""
        changed = []
        fast = self._all_unchanged()
        if not fast:
            self._flat = None  # rebuilt after this pass (benign changes update the snapshot)
        changed += self._module_changes(fast, fix)
        if not fast:
            changed += self._class_changes(fix)
        changed += self._machinery_changes(fix)
        changed += self._hook_changes(fix)
        changed += self._torch_modes(fix)
        return changed

    def _module_changes(self, fast, fix):
        """Protected modules' functions, classes and submodules, and their entries in sys.modules."""
        changed = []
        for name, (module, module_type, saved) in self.modules.items():
            if fast and module is not builtins and _type(module) is module_type:
                continue
            if _type(module) is not module_type:
                changed.append(f"{name}.__class__")
                if fix:
                    try:
                        module.__class__ = module_type
                    except TypeError:
                        pass
            current = _vars(module)
            for key, value in _list(saved.items()):
                now = current.get(key, _MISSING)
                if _same(now, value) or (module is sys and key in _SYS_VOLATILE):
                    continue
                if _benign(now, value):
                    saved[key] = now
                    continue
                changed.append(f"{name}.{key}")
                if fix:
                    current[key] = value
        for name, module in self.sys_modules.items():
            if sys.modules.get(name) is not module:
                changed.append(f"sys.modules[{name!r}]")
                if fix:
                    sys.modules[name] = module
        return changed

    def _class_changes(self, fix):
        """Methods and attributes of the protected classes (new ones too: a new __eq__)."""
        changed = []
        for cls, saved in self.classes:
            current = cls.__dict__
            keys = _set(current) | _set(saved)
            for key in _sorted(keys):
                now, then = current.get(key, _MISSING), saved.get(key, _MISSING)
                if _same(now, then):
                    continue
                if key in _CLASS_CACHES or _benign(now, then) or not (
                        (now is not _MISSING and _relevant(now)) or (then is not _MISSING and _relevant(then))):
                    # A cache, a counter (RemovableHandle.next_id) or a library's own re-wrap: the new normal.
                    if now is _MISSING:
                        saved.pop(key, None)
                    else:
                        saved[key] = now
                    continue
                changed.append(f"{cls.__module__}.{cls.__qualname__}.{key}")
                if fix:
                    try:
                        if then is _MISSING:
                            _type.__delattr__(cls, key)
                        else:
                            _type.__setattr__(cls, key, then)
                    except (TypeError, AttributeError):
                        pass
        return changed

    def _machinery_changes(self, fix):
        """IPython's and the kernel's machinery: shadowing instance attributes, shell attributes, the notebook's
        __builtins__, input and AST transformers, event callbacks."""
        changed = []
        for obj, saved in self.instance_methods:
            now = self._shadowing(obj)
            for key in _set(now) | _set(saved):
                if _same(now.get(key, _MISSING), saved.get(key, _MISSING)):
                    continue
                if key in now and _library_code(now[key]):
                    continue  # IPython's own per-cell wrappers (sys.stdout.write while outputs are captured)
                changed.append(f"{_type(obj).__name__}.{key} (instance)")
                if fix:
                    try:
                        if key in saved:
                            object.__setattr__(obj, key, saved[key])
                        else:
                            del _vars(obj)[key]
                    except (TypeError, AttributeError, KeyError):
                        pass
        for attr, value in self.shell_attrs.items():
            if not _same(_getattr(self.shell, attr, _MISSING), value):
                changed.append(f"shell.{attr}")
                if fix:
                    try:
                        _setattr(self.shell, attr, value)
                    except Exception:  # noqa: BLE001
                        pass
        user_ns = self.shell_attrs.get("user_ns")
        if user_ns is not None and user_ns.get("__builtins__", builtins) is not builtins and \
                user_ns.get("__builtins__") is not _vars(builtins):
            changed.append("__builtins__ of the notebook")
            if fix:
                user_ns["__builtins__"] = builtins
        for lst, saved in self.lists:
            if _len(lst) != _len(saved) or any(a is not b for a, b in zip(lst, saved)):
                changed.append("IPython input/AST transformers")
                if fix:
                    lst[:] = saved
        for session, name, value in self.session_codecs:
            if not _same(_getattr(session, name, _MISSING), value):
                changed.append(f"Session.{name}")
                if fix:
                    _setattr(session, name, value)
        for table, key, value in self.str_printers:
            if table.get(key, _MISSING) is not value:
                changed.append("IPython's text form of str")
                if fix and value is _MISSING:
                    table.pop(key, None)
                elif fix:
                    table[key] = value
        events = _getattr(self.shell, "events", None)
        for name, fns in _getattr(events, "callbacks", {}).items():
            saved = self.callbacks.get(name, [])
            extra = [fn for fn in fns if not any(fn is s for s in saved) and not _trusted_callback(fn)]
            missing = [fn for fn in saved if not any(fn is f for f in fns)]
            if extra or missing:
                changed.append(f"IPython event callbacks ({name})")
                if fix:
                    fns[:] = [fn for fn in fns if not any(fn is e for e in extra)] + missing
        return changed

    def _hook_changes(self, fix):
        """sys hooks, import hooks, trace and profile functions, torch's global module hooks."""
        changed = []
        for name, value in self.sys_hooks.items():
            if not _same(_getattr(sys, name, _MISSING), value):
                changed.append(f"sys.{name}")
                if fix and value is not _MISSING:
                    _setattr(sys, name, value)
        if _list(sys.meta_path) != self.meta_path or _list(sys.path_hooks) != self.path_hooks:
            changed.append("import hooks")
            if fix:
                sys.meta_path[:] = self.meta_path
                sys.path_hooks[:] = self.path_hooks
        if _gettrace() is not None or _getprofile() is not None:
            changed.append("trace or profile function")
            if fix:
                _settrace(None)
                _setprofile(None)
        try:
            import threading

            if threading.gettrace() is not None or threading.getprofile() is not None:
                changed.append("thread trace or profile function")
                if fix:
                    threading.settrace(None)
                    threading.setprofile(None)
        except AttributeError:
            pass
        for hooks, saved in self.torch_hooks:
            if _len(hooks) != _len(saved) or any(hooks.get(k, _MISSING) is not v for k, v in saved.items()):
                changed.append("torch global module hooks")
                if fix:
                    hooks.clear()
                    hooks.update(saved)
        return changed

    def _torch_modes(self, fix):
        torch = self.sys_modules.get("torch")
        if torch is None:
            return []
        changed = []
        try:
            from torch.overrides import _get_current_function_mode_stack
            from torch.utils._device import DeviceContext

            stack = _get_current_function_mode_stack()
            foreign = [mode for mode in stack if _type(mode) is not DeviceContext]
            if foreign:
                changed.append("torch function modes")
                if fix:
                    while torch._C._len_torch_function_stack():
                        torch._C._pop_torch_function_stack()
                    for mode in stack:  # keep torch.set_default_device()'s mode
                        if _type(mode) is DeviceContext:
                            torch._C._push_on_torch_function_stack(mode)
        except Exception:  # noqa: BLE001 - private torch API; absence just means no check
            pass
        try:
            if torch._C._len_torch_dispatch_stack():
                changed.append("torch dispatch modes")
                if fix:
                    from torch.utils._python_dispatch import _pop_mode

                    while torch._C._len_torch_dispatch_stack():
                        _pop_mode()
        except Exception:  # noqa: BLE001
            pass
        return changed

    # -- what the grader calls -----------------------------------------------------------------
    def record(self, names):
        """After an instructor's cell: remember what it bound to *names* (imports, helpers, data)."""
        user_ns = self.shell_attrs.get("user_ns", {})
        for name in names:
            value = user_ns.get(name, _MISSING)
            if value is not _MISSING:
                self.pins[name] = value

    def before(self, token, builtin_names=()):
        undone = self._differences(fix=True)
        user_ns = self.shell_attrs.get("user_ns", {})
        self.stash = {}
        for name, value in self.pins.items():
            now = user_ns.get(name, _MISSING)
            if now is not value:
                self.stash[name] = now
                user_ns[name] = value
                if _isinstance(value, _ModuleType) and now is not _MISSING:
                    undone.append(f"global name {name!r} (module {value.__name__})")
        for name in builtin_names:
            if name in user_ns and name not in self.pins and _hasattr(builtins, name):
                self.stash[name] = user_ns.pop(name)
        torch = self.sys_modules.get("torch")
        if torch is not None and _hasattr(torch._C, "DisableTorchFunctionSubclass"):
            self.torch_ctx = torch._C.DisableTorchFunctionSubclass()
            self.torch_ctx.__enter__()
        self.events = []
        self.in_test = True
        return f"{self.prefix}-BEFORE {token} " + "|".join(_sorted(_set(undone)))

    def after(self, token, own_names=()):
        self.in_test = False
        problems = _list(self.events)
        torch = self.sys_modules.get("torch")
        if self.torch_ctx is not None:
            try:
                if torch._C._is_torch_function_enabled():
                    problems.append("torch function overrides re-enabled")
                self.torch_ctx.__exit__(None, None, None)
            except Exception:  # noqa: BLE001
                problems.append("torch function state")
            self.torch_ctx = None
        problems += self._differences(fix=True)
        user_ns = self.shell_attrs.get("user_ns", {})
        for name, value in self.pins.items():
            if user_ns.get(name, _MISSING) is not value and name not in own_names:
                problems.append(f"global name {name!r} rebound during the test")
        # Give the student's bindings back, so cells after the test see their own state
        # (except the names the test itself binds: those are the test's now).
        for name, value in self.stash.items():
            if name in own_names:
                continue
            if value is _MISSING:
                user_ns.pop(name, None)
            else:
                user_ns[name] = value
        self.stash = {}
        verdict = "OK" if not problems else "FAIL " + "|".join(_sorted(_set(problems)))
        return f"{self.prefix}-AFTER {token} {verdict}"


_guard = None


def install(shell, token_prefix, extra_modules=()):
    """Called once, by the grader's first cell, before any of the notebook's cells."""
    global _guard
    _guard = _Guard(shell, token_prefix, extra_modules)


def _as_in_a_cell(check, *args):
    """The checks compare with a snapshot taken inside a cell; the grader calls them right after one. IPython and
    the kernel set some things only while a cell runs (IPython's builtins and display hook, ``sys.excepthook``,
    ``input``): the genuine traps and the snapshot's values put them back for the check, as a cell would."""
    builtin_values = _guard.modules.get("builtins", (None, None, {}))[2]
    swaps = [(sys, "excepthook", _guard.sys_hooks.get("excepthook", _MISSING)),
             (builtins, "input", builtin_values.get("input", _MISSING))]
    with _ExitStack() as stack:
        for name in ("builtin_trap", "display_trap"):
            if _guard.shell_attrs.get(name) is not None:
                stack.enter_context(_guard.shell_attrs[name])
        for owner, name, value in swaps:
            if value is not _MISSING:
                stack.callback(_setattr, owner, name, _getattr(owner, name))
                _setattr(owner, name, value)
        return check(*args)


def restore():
    """Before an instructor's setup cell: undo the notebook's patches, so that what the cell binds is genuine."""
    _as_in_a_cell(_guard._differences, True)


def record(names):
    _guard.record(names)


def before(token, builtin_names=()):
    return _as_in_a_cell(_guard.before, token, builtin_names)


def after(token, own_names=()):
    return _as_in_a_cell(_guard.after, token, own_names)
