"""Functions named in a config by import path: `package.module:function` (importable from
sys.path) or `path/to/file.py:function` (a file of the user's own, loaded once per process)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path


class PluginError(ValueError):
    """An import path that names no callable; the message says why."""


def load_callable(path: str) -> Callable:
    """The callable named by `module:attr` or `file.py:attr` (raises PluginError)."""
    fn = load_object(path)
    if not callable(fn):
        raise PluginError(f"{path!r} names a {type(fn).__name__}, not a function")
    return fn


def load_object(path: str):
    """The object named by `module:attr` or `file.py:attr` (raises PluginError)."""
    module_name, sep, attr = str(path).rpartition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"{path!r} is not an import path of the form package.module:function")
    if module_name.endswith(".py"):
        file = Path(module_name).expanduser().resolve()
        if not file.is_file():
            raise PluginError(f"{path!r}: no such file {file}")
        key = f"_prn_plugin_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
        module = sys.modules.get(key)
        if module is None:
            spec = importlib.util.spec_from_file_location(key, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:
                del sys.modules[key]
                raise PluginError(f"{path!r}: importing {file} failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise PluginError(f"{path!r}: cannot import {module_name!r} ({e})") from e
    if not hasattr(module, attr):
        raise PluginError(f"{path!r}: {module_name} has no attribute {attr!r}")
    return getattr(module, attr)
