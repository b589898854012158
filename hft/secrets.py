"""Secrets: a value type that never prints itself, and log redaction.

Credentials reach the framework through YAML (usually as ``${ENV_VAR}``
references) and must never reach a terminal, a log file or a dumped config.
Two layers keep them out:

* :class:`Secret` wraps the string. ``str()``, ``repr()``, ``format()`` and
  ``model_dump(mode="json")`` all give ``***``; only an explicit
  :meth:`Secret.reveal` (alias :meth:`Secret.get_secret_value`, the pydantic
  ``SecretStr`` spelling) returns the value. Use it as a field type in any
  pydantic model, adapters' options models included.
* :class:`SecretRegistry` remembers every secret value seen while loading a
  configuration, and :meth:`SecretRegistry.redact` replaces each of them in
  arbitrary text with ``***``. Defensively it also redacts the values of
  environment variables whose names look secret (``*KEY*``, ``*SECRET*``,
  ``*TOKEN*``, ``*PASSWORD*``, ``*PASSPHRASE*``), in case a credential reached a
  message without passing through a :class:`Secret`. :class:`RedactingFilter`
  applies that to every log record; :func:`install_log_redaction` puts it on
  the root logger's handlers.

The registry is an explicit object that callers may create and pass around.
For the command line there is exactly one module-level instance,
:data:`DEFAULT_REGISTRY`, used by :func:`register_secret`, :func:`redact`,
:class:`RedactingFilter` and :func:`hft.config.load_config` when no registry is
given. It only ever grows during a process' life (secrets are not "unseen").
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

__all__ = [
    "DEFAULT_REGISTRY",
    "MASK",
    "RedactingFilter",
    "Secret",
    "SecretRegistry",
    "install_log_redaction",
    "looks_secret",
    "redact",
    "register_secret",
]

MASK = "***"

# Values shorter than this are not redacted: masking every "a" or "1" in every
# log line would destroy the logs and protect nothing (no real credential is
# that short).
MIN_SECRET_LENGTH = 4
# Environment values are only a heuristic, so they need to look like a real
# credential before we start masking them everywhere (``KEYTIMEOUT=1`` should
# not turn every "1" into ``***``).
MIN_ENV_SECRET_LENGTH = 8

_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSPHRASE", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    """Whether an environment variable or config key name suggests a credential."""
    return bool(_SECRET_NAME.search(name))


class Secret:
    """A string that prints as ``***``; call :meth:`reveal` to get the value.

    Usable as a pydantic field type: it validates from ``str`` (or another
    ``Secret``), registers the value with the :class:`SecretRegistry` passed in
    the validation context under ``"secret_registry"`` (else
    :data:`DEFAULT_REGISTRY`), and serialises as ``***`` in JSON mode. In
    python-mode ``model_dump()`` it stays a ``Secret`` object, so the value is
    still only reachable through :meth:`reveal`.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret value. Call it at the last moment, where the venue needs it."""
        return self._value

    get_secret_value = reveal

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    # -- pydantic integration ------------------------------------------------

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            _validate_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(_serialize_secret, info_arg=True),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "password", "writeOnly": True}


def _validate_secret(value: Any, info: core_schema.ValidationInfo) -> Secret:
    if isinstance(value, Secret):
        secret = value
    elif isinstance(value, str):
        secret = Secret(value)
    else:
        raise PydanticCustomError("string_type", "Input should be a valid string (quote it in YAML)")
    registry = None
    if isinstance(info.context, Mapping):
        registry = info.context.get("secret_registry")
    (registry if isinstance(registry, SecretRegistry) else DEFAULT_REGISTRY).register(secret.reveal())
    return secret


def _serialize_secret(value: Secret, info: core_schema.SerializationInfo) -> Any:
    if info.mode_is_json():
        return MASK if value else ""
    return value


class SecretRegistry:
    """Secret values to redact from text, safe to use from several threads.

    ``environ`` is consulted on every :meth:`redact` call for variables whose
    names look secret (see :func:`looks_secret`); pass ``environ={}`` to turn
    that heuristic off, or a mapping of your own in tests. ``None`` means
    ``os.environ``.
    """

    def __init__(self, values: Iterable[str] = (), *, environ: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._environ = environ
        # (frozenset of values, compiled pattern), swapped atomically on change
        self._cache: tuple[frozenset[str], re.Pattern[str] | None] = (frozenset(), None)
        for v in values:
            self.register(v)

    def register(self, value: str | Secret | None) -> None:
        """Remember ``value`` so that :meth:`redact` masks it. Empty and very short values are ignored."""
        if isinstance(value, Secret):
            value = value.reveal()
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._values.add(value)

    def __contains__(self, value: object) -> bool:
        with self._lock:
            return value in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def clear(self) -> None:
        """Forget every registered value (tests; a long-lived process has no reason to)."""
        with self._lock:
            self._values.clear()

    def _env_values(self) -> set[str]:
        environ = os.environ if self._environ is None else self._environ
        out = set()
        for name, value in list(environ.items()):
            if value and len(value) >= MIN_ENV_SECRET_LENGTH and looks_secret(name):
                out.add(value)
        return out

    def _pattern(self) -> re.Pattern[str] | None:
        with self._lock:
            values = set(self._values)
        values |= self._env_values()
        key = frozenset(values)
        cached_key, cached = self._cache
        if key == cached_key:
            return cached
        # Longest first, so a secret containing another one is masked whole.
        pattern = re.compile("|".join(re.escape(v) for v in sorted(key, key=len, reverse=True))) if key else None
        self._cache = (key, pattern)
        return pattern

    def redact(self, text: str) -> str:
        """``text`` with every known secret value replaced by ``***``."""
        if not isinstance(text, str):
            text = str(text)
        pattern = self._pattern()
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)


DEFAULT_REGISTRY = SecretRegistry()
"""The process-wide registry the CLI uses; the only module-level instance."""


def register_secret(value: str | Secret | None, registry: SecretRegistry | None = None) -> None:
    """Remember ``value`` in ``registry`` (default :data:`DEFAULT_REGISTRY`) for redaction."""
    (registry or DEFAULT_REGISTRY).register(value)


def redact(text: str, registry: SecretRegistry | None = None) -> str:
    """Replace every secret known to ``registry`` (default :data:`DEFAULT_REGISTRY`) in ``text`` with ``***``."""
    return (registry or DEFAULT_REGISTRY).redact(text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in each record it sees; it never drops a record.

    The message is formatted (``msg % args``), redacted, and stored back as
    ``record.msg`` with ``record.args`` emptied, so a secret passed as an
    argument is masked as well as one in the format string, whatever the
    argument's type. Exception and stack text are formatted and redacted too.
    Attach it to handlers, not loggers: a logger's filters do not see records
    propagated from child loggers.
    """

    def __init__(self, registry: SecretRegistry | None = None) -> None:
        super().__init__()
        self.registry = registry or DEFAULT_REGISTRY

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep logging's own error handling, but still redact
            message = f"{record.msg!s} {record.args!r}"
        record.msg = self.registry.redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.registry.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.registry.redact(record.stack_info)
        return True


def install_log_redaction(
    registry: SecretRegistry | None = None, logger: logging.Logger | None = None
) -> RedactingFilter:
    """Put a :class:`RedactingFilter` on every handler of ``logger`` (default: the root logger).

    Idempotent per handler: a handler that already has a ``RedactingFilter``
    for the same registry is left alone. Call it after configuring logging
    handlers; handlers added later need ``handler.addFilter(filter)`` with the
    returned filter.
    """
    target = logger or logging.getLogger()
    flt = RedactingFilter(registry)
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) and f.registry is flt.registry for f in handler.filters):
            handler.addFilter(flt)
    return flt
