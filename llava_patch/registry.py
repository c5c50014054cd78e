"""Name → class registries for selection methods and model adapters.

A method is one file in `llava_patch/methods/` decorated with `@register_method("name")`; an adapter
is one file in `llava_patch/adapters/` decorated with `@register_adapter`. Both packages import all
their modules, so adding a file is the whole change.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, TypeVar

_METHODS: dict[str, type] = {}
_ADAPTERS: list[type] = []
T = TypeVar("T", bound=type)


def register_method(name: str) -> Callable[[T], T]:
    def decorate(cls: T) -> T:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is registered twice ({_METHODS[name].__module__}, {cls.__module__})")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def register_adapter(cls: T) -> T:
    _ADAPTERS.append(cls)
    return cls


def _import_all(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{info.name}")


def methods() -> list[str]:
    """Names of the registered selection methods."""
    _import_all("llava_patch.methods")
    return sorted(_METHODS)


def create_method(name: str, options: dict[str, Any], model_options: list[str] = ()):
    """Instantiate method `name` with its options; unknown names and options raise ValueError
    (naming the valid ones, and `model_options`, those of the model family)."""
    if name not in methods():
        raise ValueError(f"unknown method {name!r}; registered methods: {', '.join(methods())}")
    cls = _METHODS[name]
    params = inspect.signature(cls.__init__).parameters.values()
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = [p.name for p in params if p.kind in named and p.name != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) if accepted else "none"
        family = f"; this model's options: {', '.join(model_options)}" if model_options else ""
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for method {name!r}; valid options: {valid}{family}")
    return cls(**options)


def find_adapter(model: Any):
    """The adapter class that supports `model`, or a ValueError listing the supported model classes."""
    _import_all("llava_patch.adapters")
    for adapter in _ADAPTERS:
        if adapter.supports(model):
            return adapter
    supported = ", ".join(a.model_description for a in _ADAPTERS)
    raise ValueError(f"unsupported model {type(model).__name__}; llava_patch supports: {supported}")
