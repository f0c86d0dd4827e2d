"""One small registry per kind of part (f0 extractor, content encoder, sampler, vocoder, denoiser
backbone), each owned by the package that holds the parts.

    F0_EXTRACTORS = Registry("f0 method", "f0_extractor")

    @F0_EXTRACTORS.register("parselmouth", aliases=("praat",))
    class PraatF0(F0Extractor): ...

    F0_EXTRACTORS.names()          # ("crepe", "crepe-tiny", "parselmouth", "fcpe"), registration order
    F0_EXTRACTORS.get("praat")     # the class; an unknown name is a DiffSvcError listing the choices

The CLI's choices, the config's validation, `diffsvc models` and the README read the names from
here, so adding a part is one new file plus one registration. An entry whose module needs an
optional dependency (torchfcpe) is registered lazily by dotted path, so that listing the names
never imports the dependency.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from diffsvc.errors import DiffSvcError


class UnknownPartError(DiffSvcError, ValueError):
    """A name that no entry of a registry has (the message lists the choices)."""


class Registry:
    """Names -> part classes of one kind. `what` names the kind in errors; `key` is the config key
    (or CLI option) that chooses among them, so the error says what to edit."""

    def __init__(self, what: str, key: str):
        self.what = what
        self.key = key
        self._entries: dict[str, Any] = {}  # name -> class, or "module:Class" not yet imported
        self._aliases: dict[str, str] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = (), doc: str = "") -> Callable:
        """Class decorator: register the class under `name` (and hidden `aliases`)."""
        def decorate(cls):
            self.add(name, cls, aliases=aliases, doc=doc)
            return cls
        return decorate

    def add(self, name: str, target: Any, *, aliases: tuple[str, ...] = (), doc: str = "") -> None:
        """Register `target`: a class, or "package.module:Class" imported on first get()."""
        if name in self._aliases:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = target
        self._docs[name] = doc or (getattr(target, "__doc__", "") or "").strip().split("\n")[0]
        self._aliases[name] = name
        for alias in aliases:
            self._aliases[alias] = name

    def names(self) -> tuple[str, ...]:
        """The public names, in registration order (aliases left out)."""
        return tuple(self._entries)

    def canonical(self, name: str) -> str:
        """The public name for `name` or one of its aliases; DiffSvcError listing the choices if unknown."""
        try:
            return self._aliases[name]
        except (KeyError, TypeError):
            raise UnknownPartError(f"{self.key}: unknown {self.what} {name!r}; choose one of "
                               f"{', '.join(self.names())}") from None

    def get(self, name: str):
        """The class registered as `name` (or an alias); DiffSvcError listing the choices if unknown."""
        name = self.canonical(name)
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._entries[name] = target
        return target

    def class_named(self, class_name: str):
        """The registered class called `class_name` (for a package's lazy `__getattr__`), or None."""
        for name, target in self._entries.items():
            spelled = target.rpartition(":")[2] if isinstance(target, str) else target.__name__
            if spelled == class_name:
                return self.get(name)
        return None

    def doc(self, name: str) -> str:
        """One line describing the entry (its class docstring's first line unless given)."""
        return self._docs[self.canonical(name)]

    def __getitem__(self, name: str):
        """registry[name] is get(name) (mapping-style access, as the old SAMPLERS dict)."""
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._aliases

    def __iter__(self):
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self.names())})"
