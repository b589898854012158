"""Find venue adapters and strategies by name.

A YAML ``type`` is either a registered name or an import path
``package.module:Class``. Registered names come from the ``hft.venues`` and
``hft.strategies`` entry-point groups (the built-ins are declared in
``pyproject.toml``; a third-party package declares its own), plus anything
added with :meth:`Registry.register`. No folder scanning, no global state:
the CLI builds one registry and passes it down.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from hft.errors import UnknownTypeError


class Registry:
    """Name → class for one kind of plug-in (venues or strategies)."""

    def __init__(self, group: str, base: type) -> None:
        self.group = group
        self.base = base
        self._explicit: dict[str, type] = {}
        self._entry_points: dict[str, Any] | None = None

    def _eps(self) -> dict[str, Any]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entry_points

    def register(self, name: str, cls: type) -> None:
        self._check(cls, name)
        self._explicit[name] = cls

    def names(self) -> list[str]:
        return sorted(set(self._explicit) | set(self._eps()))

    def resolve(self, type_name: str) -> type:
        """The class for a registered name or a ``package.module:Class`` path."""
        if type_name in self._explicit:
            return self._explicit[type_name]
        ep = self._eps().get(type_name)
        if ep is not None:
            return self._check(ep.load(), type_name)
        if ":" in type_name:
            module_name, _, attr = type_name.partition(":")
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # noqa: BLE001 - a plug-in that fails to import is a config error
                raise UnknownTypeError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from exc
            try:
                cls = getattr(module, attr)
            except AttributeError:
                raise UnknownTypeError(f"module {module_name!r} has no attribute {attr!r}") from None
            return self._check(cls, type_name)
        known = ", ".join(self.names()) or "none"
        raise UnknownTypeError(f"unknown type {type_name!r} (registered: {known}; or use 'package.module:Class')")

    def _check(self, cls: Any, name: str) -> type:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise UnknownTypeError(f"{name!r} is not a subclass of {self.base.__name__}")
        return cls


def venue_registry() -> Registry:
    from hft.venue import VenueAdapter

    return Registry("hft.venues", VenueAdapter)


def strategy_registry() -> Registry:
    from hft.strategy import Strategy

    return Registry("hft.strategies", Strategy)
