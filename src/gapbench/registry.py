"""Classes named by an import path: a model or a task from the user's own package, e.g.
`cell=custom cell.target=mypkg.cells.JANET` (docs/extending.md). Both registries, `cells.CELLS` and
`tasks.TASKS`, resolve names that are not theirs here."""
from __future__ import annotations

import importlib


def import_class(path: str, base: type, key: str) -> type:
    """The class at `path` ("package.module.Class"), which must subclass `base`; ValueError (one
    line naming `key`, the config key that gave the path) otherwise."""
    module, _, name = str(path).rpartition(".")
    if not module:
        raise ValueError(f"{key}={path} is not an import path; give package.module.Class")
    try:
        cls = getattr(importlib.import_module(module), name)
    except AttributeError:
        raise ValueError(f"{key}={path}: module {module} has no {name}") from None
    except Exception as e:  # ImportError, or any error the module raises while it loads
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{key}={path}: cannot import {module} ({why}); is its package installed or on PYTHONPATH?") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{key}={path} is not a subclass of {base.__module__}.{base.__qualname__} (docs/extending.md)")
    return cls
