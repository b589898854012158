"""Configuration: YAML with ``${ENV}`` interpolation, validated by pydantic models.

Loading goes in fixed steps, each of which reports problems as a
:class:`ConfigError` whose ``str()`` is one line,
``<file>[:<line>[:<col>]]: <key.path[0].sub>: <reason>``:

1. read the file (``path=None`` reads the embedded ``config/default.yaml``);
2. parse it with PyYAML's safe loader, rejecting duplicate keys and non-string
   keys, and remember the line of every key and list item;
3. replace ``${VAR}`` / ``${VAR:-default}`` in *string values* (after parsing,
   so an environment value can never inject YAML structure); ``$${`` is a
   literal ``${``. ``:-`` follows the shell: an empty variable also takes the
   default. Keys are never interpolated;
4. validate with :class:`AppConfig` (``extra="forbid"`` everywhere);
5. cross-check (unique venue names, the strategy's venues and symbol exist);
6. validate each ``venues[i].options`` and ``strategy.params`` with the model
   the adapter or strategy declares, found through the callbacks given to
   :func:`load_config`.

Decimal quantities become fixed-point ints (:mod:`hft.numbers`) through the
:data:`FixedDecimal` type; credentials become :class:`hft.secrets.Secret` and
are registered for log redaction. Adapters and strategies use both types in
their own option models.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from hft import numbers
from hft.secrets import DEFAULT_REGISTRY, MASK, Secret, SecretRegistry, looks_secret

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AppConfig",
    "ConfigError",
    "ConfigIssue",
    "EngineConfig",
    "FixedDecimal",
    "JournalConfig",
    "LogConfig",
    "MetricsConfig",
    "NonNegativeFixedDecimal",
    "OptionalSecret",
    "PositiveFixedDecimal",
    "RiskConfig",
    "Secret",
    "StrategyConfig",
    "VenueConfig",
    "dump_config",
    "format_path",
    "load_config",
]

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "default.yaml"

Loc = tuple[str | int, ...]


# ---------------------------------------------------------------------------
# Errors


class ConfigIssue(typing.NamedTuple):
    """One problem: where (key path, line, column) and why."""

    path: Loc
    reason: str
    line: int | None = None
    column: int | None = None


def format_path(path: Loc) -> str:
    """``("venues", 1, "fees", "maker")`` → ``venues[1].fees.maker``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


class ConfigError(Exception):
    """An invalid configuration. ``str()`` is a single line meant for a user, never a traceback.

    ``file``, ``line``, ``column``, ``path`` (a tuple of keys and indexes) and
    ``reason`` are kept as attributes; ``issues`` lists every problem found at
    the same stage (the message shows the first one in file order and how
    many more there are).
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        path: Loc = (),
        line: int | None = None,
        column: int | None = None,
        issues: list[ConfigIssue] | None = None,
    ) -> None:
        self.reason = " ".join(str(reason).split())  # one line, whatever the source said
        self.file = file
        self.path = tuple(path)
        self.line = line
        self.column = column
        self.issues = issues if issues is not None else [ConfigIssue(self.path, self.reason, line, column)]
        super().__init__(str(self))

    @classmethod
    def from_issues(cls, file: str | None, issues: list[ConfigIssue]) -> "ConfigError":
        ordered = sorted(issues, key=lambda i: (i.line is None, i.line or 0))
        first = ordered[0]
        reason = first.reason
        if len(ordered) > 1:
            more = len(ordered) - 1
            reason += f" (+{more} more error{'s' if more > 1 else ''})"
        return cls(reason, file=file, path=first.path, line=first.line, column=first.column, issues=ordered)

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where]
        if self.path:
            parts.append(format_path(self.path))
        parts.append(self.reason)
        return ": ".join(parts)


# ---------------------------------------------------------------------------
# Field types


def _parse_fixed(value: Any) -> int:
    if isinstance(value, bool):
        raise PydanticCustomError("decimal_type", "Input should be a valid decimal, not a boolean")
    try:
        if isinstance(value, int):
            return numbers.parse(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{value} is not finite")
            # repr gives the shortest text that round-trips, i.e. what was written in YAML
            return numbers.parse(repr(value))
        if isinstance(value, Decimal):
            return numbers.parse(value)
        if isinstance(value, str):
            return numbers.parse(value)
    except (ValueError, ArithmeticError) as exc:
        raise PydanticCustomError(
            "decimal_parsing", "Input should be a valid decimal: {error}", {"error": str(exc)}
        ) from None
    raise PydanticCustomError(
        "decimal_type",
        "Input should be a valid decimal (a number or a string), got {type}",
        {"type": _yaml_type(value)},
    )


class _FixedDecimalSchema:
    """Pydantic glue for :data:`FixedDecimal`."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _parse_fixed,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: numbers.to_str(v), when_used="json"
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [{"type": "string"}, {"type": "number"}],
            "description": f"decimal, at most {numbers.SCALE_DIGITS} places; stored as fixed point",
        }


FixedDecimal = Annotated[int, _FixedDecimalSchema()]
"""A decimal quantity held as a fixed-point ``int`` (value × :data:`hft.numbers.SCALE`).

Accepts YAML ints, strings (``"0.01"``, ``"1e-3"``) and floats (converted
through ``repr``, so ``0.1`` is exactly ``0.1``); rejects booleans and more
than :data:`hft.numbers.SCALE_DIGITS` decimal places instead of rounding.
Dumps back to a decimal string in JSON mode.
"""


def _positive(value: int) -> int:
    if value <= 0:
        raise PydanticCustomError(
            "greater_than", "Input should be greater than 0, got {value}", {"value": numbers.to_str(value)}
        )
    return value


def _non_negative(value: int) -> int:
    if value < 0:
        raise PydanticCustomError(
            "greater_than_equal",
            "Input should be greater than or equal to 0, got {value}",
            {"value": numbers.to_str(value)},
        )
    return value


PositiveFixedDecimal = Annotated[FixedDecimal, AfterValidator(_positive)]
"""A :data:`FixedDecimal` that must be > 0."""
NonNegativeFixedDecimal = Annotated[FixedDecimal, AfterValidator(_non_negative)]
"""A :data:`FixedDecimal` that must be ≥ 0."""


def _empty_to_none(value: Any) -> Any:
    # `api_key: ${ALPHA_KEY:-}` with no ALPHA_KEY means "no key", not "an empty key"
    return None if value == "" else value


OptionalSecret = Annotated[Secret | None, BeforeValidator(_empty_to_none)]
"""A :class:`~hft.secrets.Secret` or ``None``; an empty string (``${KEY:-}`` with no ``KEY``) is ``None``."""

_VENUE_NAME = re.compile(r"[a-z0-9_-]+")
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9._-]*/[A-Z0-9][A-Z0-9._-]*")
# a registered name ("sim", "ccxt", "my-venue") or an import path ("pkg.module:Class")
_TYPE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*|[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*")


def _check_venue_name(value: str) -> str:
    if not _VENUE_NAME.fullmatch(value):
        raise PydanticCustomError(
            "venue_name", "venue names use only a-z, 0-9, '_' and '-', got {value}", {"value": repr(value)}
        )
    return value


def _check_symbol(value: str) -> str:
    if not _SYMBOL.fullmatch(value):
        hint = " (use upper case)" if _SYMBOL.fullmatch(value.upper()) else ""
        raise PydanticCustomError(
            "symbol",
            "symbols are unified BASE/QUOTE like BTC/USDT, got {value}{hint}",
            {"value": repr(value), "hint": hint},
        )
    return value


def _check_type_name(value: str) -> str:
    if not _TYPE_NAME.fullmatch(value):
        raise PydanticCustomError(
            "type_name",
            "expected a registered name like 'sim' or an import path like 'package.module:Class', got {value}",
            {"value": repr(value)},
        )
    return value


def _check_unique(values: list[Any]) -> list[Any]:
    seen = set()
    for v in values:
        if v in seen:
            raise PydanticCustomError("duplicate", "{value} is listed twice", {"value": repr(v)})
        seen.add(v)
    return values


def _check_options(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    raise PydanticCustomError("dict_type", "expected a mapping, got {type}", {"type": _yaml_type(value)})


VenueName = Annotated[str, AfterValidator(_check_venue_name)]
Symbol = Annotated[str, AfterValidator(_check_symbol)]
TypeName = Annotated[str, AfterValidator(_check_type_name)]
# Raw mapping until load_config swaps in the adapter's/strategy's own model instance.
Options = Annotated[Any, PlainValidator(_check_options, json_schema_input_type=dict[str, Any])]


# ---------------------------------------------------------------------------
# Schema


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineConfig(_Section):
    """How the engine runs."""

    status_interval_s: float = Field(1.0, gt=0, description="Period of the live status line, in seconds.")
    stale_book_after_s: float = Field(
        3.0,
        gt=0,
        description="A venue book with no update for this long is left out of the consolidated book, in seconds.",
    )
    shutdown_timeout_s: float = Field(
        10.0, gt=0, description="How long shutdown waits for orders to be cancelled and tasks to finish, in seconds."
    )
    manual_gc: bool = Field(
        True,
        description="Run Python's cyclic garbage collector on the housekeeping timer instead of in the middle of a "
        "market event (start-up objects are frozen out of it).",
    )
    pid_file: Path = Field(
        Path("var/hft.pid"), description="Where `hft run` writes its process id, so `hft halt` can find it."
    )
    seed: int | None = Field(
        None, description="Seed for simulated venues, so a run can be repeated; null draws a random seed."
    )


class MetricsConfig(_Section):
    """The Prometheus endpoint."""

    enabled: bool = Field(True, description="Serve Prometheus metrics over HTTP.")
    host: str = Field("127.0.0.1", min_length=1, description="Address the metrics endpoint listens on.")
    port: int = Field(9464, ge=0, le=65535, description="Port of the metrics endpoint; 0 picks a free port.")


class LogConfig(_Section):
    """Logging. Secrets are redacted from every record whatever the level."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level written: DEBUG, INFO, WARNING or ERROR (case-insensitive)."
    )
    file: Path | None = Field(None, description="Also write the log to this file; null logs to stderr only.")

    @model_validator(mode="before")
    @classmethod
    def _upper_level(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("level"), str):
            data = {**data, "level": data["level"].upper()}
        return data


class JournalConfig(_Section):
    """The SQLite journal of orders and fills."""

    enabled: bool = Field(True, description="Journal orders, fills and positions (off only for benchmarks).")
    path: Path = Field(
        Path("var/journal.sqlite"), description="SQLite file the journal writes; relative to the working directory."
    )
    synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL",
        description="NORMAL survives a killed process (kill -9, crash); FULL also survives power loss, "
        "at one fsync per batch.",
    )
    max_commit_delay_s: float = Field(
        1.0, gt=0, description="While the journal has not committed for longer than this (database locked, disk "
        "full), new orders are denied as journal_down; cancels continue. In seconds.",
    )


class RecoveryConfig(_Section):
    """What a restart (or a reconnect) does with what it finds on the venues."""

    open_orders: Literal["cancel", "adopt"] = Field(
        "cancel",
        description="Orders open on a venue from an earlier session, or that the journal never heard of: "
        "cancel them, or adopt them under management (they are canceled at shutdown either way).",
    )


class RiskConfig(_Section):
    """Pre-trade limits every order passes. No defaults: a config must state its own limits."""

    max_order_qty: PositiveFixedDecimal = Field(description="Largest quantity of one order, in base units.")
    max_order_notional: PositiveFixedDecimal = Field(
        description="Largest price × quantity of one order, in quote units."
    )
    max_position_per_venue: PositiveFixedDecimal = Field(
        description="Largest absolute position on any one venue, in base units."
    )
    max_position_total: PositiveFixedDecimal = Field(
        description="Largest absolute position summed over all venues, in base units."
    )
    max_orders_per_second: int = Field(gt=0, description="Most new orders sent per second, per venue.")
    max_orders_per_second_total: int | None = Field(
        None, gt=0, description="Most new orders sent per second over all venues; null: no global limit."
    )
    price_band_bps: float = Field(
        100.0, gt=0, description="Fat-finger band: a limit price further than this from the consolidated fair price is denied."
    )
    max_drawdown: PositiveFixedDecimal | None = Field(
        None, description="Kill switch: net P&L this far (quote units) below its peak cancels everything and halts."
    )
    reduce_only_drawdown: PositiveFixedDecimal | None = Field(
        None, description="Net P&L this far below its peak switches to REDUCING (only exposure-reducing orders)."
    )


class VenueConfig(_Section):
    """One venue connection."""

    name: VenueName = Field(
        description="Unique name of this connection, used in logs, metrics and `strategy.venues`; [a-z0-9_-]+."
    )
    type: TypeName = Field(
        description="Adapter: a registered type (`sim`, `ccxt`) or an import path `package.module:Class`."
    )
    symbols: Annotated[list[Symbol], AfterValidator(_check_unique)] = Field(
        min_length=1, description="Markets to trade, as unified BASE/QUOTE names (`BTC/USDT`)."
    )
    api_key: OptionalSecret = Field(
        None, description="API key, usually `${ENV_VAR}`; an empty value means none. Never printed."
    )
    api_secret: OptionalSecret = Field(
        None, description="API secret, usually `${ENV_VAR}`; an empty value means none. Never printed."
    )
    options: Options = Field(
        default_factory=dict,
        description="Adapter-specific settings, validated by the adapter's own options model. After loading, "
        "an instance of that model (or the raw mapping when no model was consulted).",
    )


class StrategyConfig(_Section):
    """The strategy to run."""

    type: TypeName = Field(
        description="A registered strategy (`market_making`) or an import path `package.module:Class`."
    )
    symbol: Symbol = Field(description="The market to trade, as a unified BASE/QUOTE name.")
    venues: Annotated[list[VenueName], AfterValidator(_check_unique)] | None = Field(
        None,
        min_length=1,
        description="Names of the venues to trade on; omitted or null means all configured venues.",
    )
    params: Options = Field(
        default_factory=dict,
        description="Strategy-specific settings, validated by the strategy's own params model. After loading, "
        "an instance of that model (or the raw mapping when no model was consulted).",
    )


class AppConfig(_Section):
    """A whole `hft` configuration file."""

    engine: EngineConfig = Field(default_factory=EngineConfig, description="Engine timing and simulation seed.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus metrics endpoint.")
    log: LogConfig = Field(default_factory=LogConfig, description="Logging.")
    journal: JournalConfig = Field(default_factory=JournalConfig, description="Order and fill journal.")
    recovery: RecoveryConfig = Field(default_factory=RecoveryConfig, description="Restart reconciliation.")
    risk: RiskConfig = Field(description="Pre-trade risk limits (required).")
    venues: list[VenueConfig] = Field(min_length=1, description="Venue connections; at least one, names unique.")
    strategy: StrategyConfig = Field(description="The strategy and the venues it trades.")

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> "AppConfig":
        if self.strategy.venues is None:
            self.strategy.venues = [v.name for v in self.venues]
        context = info.context if isinstance(info.context, Mapping) else {}
        if not context.get("defer_cross_checks"):
            issues = _cross_check(self)
            if issues:
                raise ValueError(f"{format_path(issues[0].path)}: {issues[0].reason}")
        return self

    def venue(self, name: str) -> VenueConfig:
        """The venue called ``name``; ``KeyError`` if there is none."""
        for v in self.venues:
            if v.name == name:
                return v
        raise KeyError(name)


def _cross_check(cfg: AppConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    by_name: dict[str, int] = {}
    for i, v in enumerate(cfg.venues):
        if v.name in by_name:
            issues.append(
                ConfigIssue(("venues", i, "name"), f"duplicate venue name {v.name!r} (also venues[{by_name[v.name]}])")
            )
        else:
            by_name[v.name] = i
    for j, name in enumerate(cfg.strategy.venues or ()):
        if name not in by_name:
            known = ", ".join(by_name)
            issues.append(ConfigIssue(("strategy", "venues", j), f"unknown venue {name!r} (venues: {known})"))
            continue
        venue = cfg.venues[by_name[name]]
        if cfg.strategy.symbol not in venue.symbols:
            issues.append(
                ConfigIssue(
                    ("strategy", "symbol"),
                    f"{cfg.strategy.symbol} is not among the symbols of venue {name!r} ({', '.join(venue.symbols)})",
                )
            )
    return issues


# ---------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """Safe loader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: the base class raises a proper error
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, file: str) -> tuple[Any, dict[Loc, int], yaml.Node | None]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason, context = exc.problem or "invalid YAML", exc.context
        if reason.startswith("but found another document"):
            reason, context = "more than one document (a config file holds exactly one)", None
        if context:
            reason += f" ({context}"
            if exc.context_mark is not None and exc.context_mark is not mark:
                reason += f" at line {exc.context_mark.line + 1}"
            reason += ")"
        raise ConfigError(
            f"invalid YAML: {reason}",
            file=file,
            line=mark.line + 1 if mark is not None else None,
            column=mark.column + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is not None:
        _index_lines(node, (), lines, set())
    return data, lines, node


def _index_lines(node: yaml.Node, path: Loc, out: dict[Loc, int], active: set[int]) -> None:
    """Record the (1-based) line of every mapping key and sequence item under ``node``."""
    if id(node) in active:  # a recursive alias
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        # construct_document already flattened merge keys (`<<: *base`) into node.value
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = (key_node.value,)
                out[path + key] = key_node.start_mark.line + 1
                _index_lines(value_node, path + key, out, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            _index_lines(item, path + (i,), out, active)
    active.discard(id(node))


def _line_of(lines: Mapping[Loc, int], path: Loc) -> int | None:
    """Line of ``path``, or of its nearest ancestor present in the file (for a missing key)."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return None


def _yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


# ---------------------------------------------------------------------------
# Environment interpolation

_INTERPOLATION = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_REFERENCE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _interpolate(
    data: Any, env: Mapping[str, str], registry: SecretRegistry, issues: list[ConfigIssue], lines: Mapping[Loc, int]
) -> Any:
    def substitute(text: str, path: Loc) -> str:
        if "$" not in text:
            return text

        def one(m: re.Match[str]) -> str:
            token = m.group(0)
            if token == "$${":
                return "${"
            if m.group(1) is None:
                raise _BadReference("unclosed '${' (write '$${' for a literal '${')")
            ref = _REFERENCE.fullmatch(m.group(1))
            if ref is None:
                raise _BadReference(f"invalid reference {token!r}: expected ${{NAME}} or ${{NAME:-default}}")
            name, default = ref.group(1), ref.group(2)
            value = env.get(name)
            if value and looks_secret(name):
                registry.register(value)  # e.g. ${API_TOKEN} used in a field that is not a Secret
            if value is None or (value == "" and default is not None):
                if default is None:
                    raise _BadReference(f"environment variable {name} is not set")
                return default
            return value

        try:
            result = _INTERPOLATION.sub(one, text)
        except _BadReference as exc:
            issues.append(ConfigIssue(path, str(exc), _line_of(lines, path)))
            return text
        if result != text and path and isinstance(path[-1], str) and looks_secret(path[-1]):
            # e.g. a credential in an adapter's raw `options`: redact it even if no Secret wraps it
            registry.register(result)
        return result

    def walk(value: Any, path: Loc, active: set[int]) -> Any:
        if isinstance(value, str):
            return substitute(value, path)
        if isinstance(value, (dict, list)):
            if id(value) in active:
                issues.append(ConfigIssue(path, "recursive YAML alias", _line_of(lines, path)))
                return None
            active.add(id(value))
            try:
                if isinstance(value, dict):
                    out = {}
                    for k, v in value.items():
                        if not isinstance(k, str):
                            hint = " (quote it: YAML reads yes/no/on/off as booleans)" if isinstance(k, bool) else ""
                            reason = f"keys must be strings, got {_yaml_type(k)} {k!r}{hint}"
                            issues.append(ConfigIssue(path, reason, _line_of(lines, path)))
                            continue
                        out[k] = walk(v, path + (k,), active)
                    return out
                return [walk(v, path + (i,), active) for i, v in enumerate(value)]
            finally:
                active.discard(id(value))
        return value

    return walk(data, (), set())


class _BadReference(Exception):
    pass


# ---------------------------------------------------------------------------
# Pydantic errors → issues


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class at ``loc`` below ``model``, if the annotations lead to one."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, str) and isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp = field.annotation
        elif isinstance(part, int) and typing.get_origin(tp) in (list, tuple):
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unknown_key_reason(model: type[BaseModel], loc: Loc) -> str:
    parent = _model_at(model, loc[:-1]) if loc else None
    if parent is None:
        return "unknown key"
    allowed = [f.alias or name for name, f in parent.model_fields.items()]
    key = loc[-1]
    close = difflib.get_close_matches(str(key), allowed, n=1) if isinstance(key, str) else []
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; allowed keys: {', '.join(allowed)}" if allowed else "unknown key; this section takes no keys"


_SHOW_INPUT = {
    "string_type",
    "int_type",
    "float_type",
    "bool_type",
    "int_parsing",
    "int_from_float",
    "float_parsing",
    "bool_parsing",
    "literal_error",
    "enum",
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "too_short",
    "too_long",
    "string_too_short",
    "string_too_long",
    "decimal_parsing",
}


def _issues_from_validation(
    exc: ValidationError, model: type[BaseModel], prefix: Loc, lines: Mapping[Loc, int]
) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        value = err.get("input")
        if kind == "missing":
            reason = "missing required key"
        elif kind == "extra_forbidden":
            reason = _unknown_key_reason(model, loc)
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            reason = f"expected a mapping, got {_yaml_type(value)}"
        elif kind in ("list_type", "tuple_type"):
            reason = f"expected a list, got {_yaml_type(value)}"
        else:
            reason = err["msg"]
            if kind.startswith("value_error"):
                reason = reason.removeprefix("Value error, ")
            secretish = any(isinstance(p, str) and looks_secret(p) for p in loc)
            if (
                kind in _SHOW_INPUT
                and not secretish
                and isinstance(value, (str, int, float, bool))
                and "got" not in reason
            ):
                shown = repr(value)
                reason += f", got {shown if len(shown) <= 40 else shown[:37] + '...'}"
        full = prefix + loc
        issues.append(ConfigIssue(full, reason, _line_of(lines, full)))
    return issues


# ---------------------------------------------------------------------------
# Loading


def _read(path: str | Path | None) -> tuple[str, str]:
    file = str(path) if path is not None else str(DEFAULT_CONFIG_PATH)
    p = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a file", file=file) from None
    except PermissionError:
        raise ConfigError("permission denied", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=file) from None
    try:
        return file, raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"not valid UTF-8 (byte {exc.start})", file=file, line=line) from None


ModelLookup = Callable[[str], "type[BaseModel] | None"]


def load_config(
    path: str | Path | None = None,
    *,
    venue_options_model: ModelLookup | None = None,
    strategy_params_model: ModelLookup | None = None,
    env: Mapping[str, str] | None = None,
    secrets: SecretRegistry | None = None,
) -> AppConfig:
    """Read, interpolate and validate a configuration file.

    ``path=None`` loads the embedded :data:`DEFAULT_CONFIG_PATH`.

    ``venue_options_model(type)`` / ``strategy_params_model(type)`` return the
    pydantic model an adapter / a strategy declares for its ``options`` /
    ``params``. The validated instance replaces the raw mapping in the returned
    config. Returning ``None`` means the type takes no options (the mapping
    must then be empty); raising ``LookupError`` (or ``ImportError``) means the
    type is unknown, reported at ``venues[i].type`` / ``strategy.type``. When a
    callback is not given, that mapping is kept raw and unchecked.

    ``env`` defaults to ``os.environ``; ``secrets`` (default
    :data:`hft.secrets.DEFAULT_REGISTRY`) receives every credential seen, for
    log redaction.

    Raises :class:`ConfigError`, whose ``str()`` is a one-line message.
    """
    file, text = _read(path)
    data, lines, node = _parse_yaml(text, file)
    if not isinstance(data, dict):
        what = "an empty document" if data is None else _yaml_type(data)
        line = node.start_mark.line + 1 if node is not None else None
        raise ConfigError(f"the top level must be a mapping of sections, got {what}", file=file, line=line)

    registry = secrets if secrets is not None else DEFAULT_REGISTRY
    issues: list[ConfigIssue] = []
    data = _interpolate(data, os.environ if env is None else env, registry, issues, lines)
    if issues:
        raise _error(file, issues, registry)

    context = {"secret_registry": registry, "defer_cross_checks": True}
    try:
        cfg = AppConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise _error(file, _issues_from_validation(exc, AppConfig, (), lines), registry) from None

    issues = [i._replace(line=_line_of(lines, i.path)) for i in _cross_check(cfg)]

    if venue_options_model is not None:
        cache: dict[str, type[BaseModel] | None] = {}
        for i, venue in enumerate(cfg.venues):
            validated = _validate_options(
                venue.type, venue.options, venue_options_model, cache, ("venues", i), "options", "venue", context,
                lines, issues,
            )
            if validated is not None:
                venue.options = validated
    if strategy_params_model is not None:
        validated = _validate_options(
            cfg.strategy.type, cfg.strategy.params, strategy_params_model, {}, ("strategy",), "params", "strategy",
            context, lines, issues,
        )
        if validated is not None:
            cfg.strategy.params = validated

    if issues:
        raise _error(file, issues, registry)
    return cfg


def _error(file: str, issues: list[ConfigIssue], registry: SecretRegistry) -> ConfigError:
    # messages may quote an input value; never one that is a known secret
    return ConfigError.from_issues(file, [i._replace(reason=registry.redact(i.reason)) for i in issues])


def _validate_options(
    type_name: str,
    raw: Any,
    lookup: ModelLookup,
    cache: dict[str, type[BaseModel] | None],
    owner: Loc,
    key: str,
    what: str,
    context: dict[str, Any],
    lines: Mapping[Loc, int],
    issues: list[ConfigIssue],
) -> BaseModel | None:
    if type_name not in cache:
        try:
            cache[type_name] = lookup(type_name)
        except (LookupError, ImportError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            path = owner + ("type",)
            issues.append(ConfigIssue(path, f"unknown {what} type {type_name!r}: {message}", _line_of(lines, path)))
            return None
    model = cache[type_name]
    path = owner + (key,)
    if isinstance(raw, BaseModel):  # already validated (a config object passed through twice)
        return raw
    if model is None:
        if raw:
            issues.append(
                ConfigIssue(path, f"{what} type {type_name!r} takes no {key}", _line_of(lines, path))
            )
        return None
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        issues.extend(_issues_from_validation(exc, model, path, lines))
        return None


# ---------------------------------------------------------------------------
# Dumping


def _mask_secret_keys(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask_secret_keys(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_secret_keys(v, key) for v in value]
    if isinstance(value, str) and value and value != MASK and looks_secret(key):
        return MASK
    return value


def dump_config(cfg: AppConfig, *, secrets: SecretRegistry | None = None) -> str:
    """The validated configuration as YAML, with defaults filled in and every secret shown as ``***``.

    Decimals appear as exact strings. Besides :class:`Secret` fields, string
    values under keys that look like credentials (``*key*``, ``*secret*``,
    ``*token*``, ``*password*``, ``*passphrase*``) and any text known to the
    secret registry are masked, so raw adapter options cannot leak either.
    """
    data = _mask_secret_keys(cfg.model_dump(mode="json"))
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return (secrets if secrets is not None else DEFAULT_REGISTRY).redact(text)
