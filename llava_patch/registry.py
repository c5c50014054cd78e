"""Name → class registries for methods, model adapters and vision-encoder adapters, and what each
method declares.

A method is one file in `llava_patch/methods/` decorated with `@register_method("name")`; a model
adapter is one file in `llava_patch/adapters/` decorated with `@register_adapter`; an encoder adapter
(one vision-tower family) is one file in `llava_patch/encoders/` decorated with `@register_encoder`.
All are imported by name below, on first use (so `import llava_patch` stays light), which is where a
new one is added.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from .encoders.base import Encoder

_METHODS: dict[str, type] = {}
_ADAPTERS: list[type] = []
_ENCODERS: list[type] = []
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


def register_encoder(cls: T) -> T:
    _ENCODERS.append(cls)
    return cls


def _method_classes() -> dict[str, type]:
    from .methods import fastervlm, fastv, fitprune, grid, none, prumerge_plus, random, sparsevlm, vtc_cls  # noqa: F401  (they register)

    return _METHODS


def methods() -> list[str]:
    """Names of the registered methods."""
    return sorted(_method_classes())


@dataclass(frozen=True)
class MethodInfo:
    """What a method declares about itself (see `llava_patch.methods.base.Method`)."""

    name: str
    stage: str  # "vision": selects patches before the projector; "llm": prunes inside the language model
    takes_budget: bool  # False: keeps everything, takes neither keep nor reduction_ratio
    variable_count: bool  # the visual-token count differs per image
    budgets: tuple[int, ...] | None  # the only keep values it defines (None: any keep or reduction ratio)
    needs_recipe: bool  # a budget needs a recipe fitted to the model (FitPrune); sweeps and the demo skip it
    options: dict[str, Any]  # its own options and their defaults
    description: str  # first line of its docstring

    @property
    def takes_reduction_ratio(self) -> bool:
        return self.takes_budget and self.budgets is None


def method_info(name: str) -> MethodInfo:
    """The properties of method `name`; an unknown name raises ValueError listing the known ones."""
    classes = _method_classes()
    if name not in classes:
        raise ValueError(f"unknown method {name!r}; registered methods: {', '.join(methods())}")
    cls = classes[name]
    doc = (cls.__doc__ or inspect.getmodule(cls).__doc__ or "").strip()
    return MethodInfo(name=name, stage=cls.stage, takes_budget=cls.takes_budget, variable_count=cls.variable_count,
                      budgets=cls.budgets, needs_recipe=cls.needs_recipe, options={p.name: p.default for p in _parameters(cls)},
                      description=doc.splitlines()[0] if doc else "")


def _parameters(cls: type) -> list[inspect.Parameter]:
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p for p in inspect.signature(cls.__init__).parameters.values() if p.kind in named and p.name != "self"]


def create_method(name: str, options: dict[str, Any], model_options: list[str] = ()):
    """Instantiate method `name` with its options; unknown names and options raise ValueError
    (naming the valid ones, and `model_options`, those of the model family)."""
    cls = _method_classes().get(name)
    if cls is None:
        raise ValueError(f"unknown method {name!r}; registered methods: {', '.join(methods())}")
    accepted = [p.name for p in _parameters(cls)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) if accepted else "none"
        family = f"; this model's options: {', '.join(model_options)}" if model_options else ""
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for method {name!r}; valid options: {valid}{family}")
    return cls(**options)


def find_adapter(model: Any):
    """The adapter class that supports `model`, or a ValueError listing the supported model classes."""
    from .adapters import hf_llava, hf_llava_next, hf_video_llava, llava_original  # noqa: F401  (they register)

    for adapter in _ADAPTERS:
        if adapter.supports(model):
            return adapter
    supported = ", ".join(a.model_description for a in _ADAPTERS)
    raise ValueError(f"unsupported model {type(model).__name__}; llava_patch supports: {supported}")


def find_encoder(tower: Any) -> Encoder:
    """The encoder adapter wrapping vision tower `tower`, or a
    ValueError naming the tower's class and the supported families."""
    from .encoders import clip, dinov2  # noqa: F401  (they register)

    for encoder in _ENCODERS:
        if encoder.supports(tower):
            return encoder(tower)
    supported = "; ".join(e.family for e in _ENCODERS)
    raise ValueError(f"unsupported vision tower {type(tower).__name__}: pruning needs a ViT with a [CLS] token "
                     f"of a supported family: {supported}")
