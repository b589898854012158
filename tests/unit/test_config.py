"""Configuration loading: interpolation, validation and one-line errors with file, line and key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from hft import numbers
from hft.config import (
    DEFAULT_CONFIG_PATH,
    AppConfig,
    ConfigError,
    FixedDecimal,
    PositiveFixedDecimal,
    Secret,
    dump_config,
    format_path,
    load_config,
)
from hft.secrets import SecretRegistry

REPO = Path(__file__).resolve().parents[2]

# Small option models standing in for an adapter's and a strategy's own.


class FakeSimOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latency_ms: int = 0
    maker_fee: FixedDecimal = 0
    password: Secret | None = None


class FakeMMParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_size: PositiveFixedDecimal
    levels: int = 1


def venue_models(type_name: str) -> type[BaseModel] | None:
    if type_name == "sim":
        return FakeSimOptions
    if type_name == "bare":
        return None  # an adapter that takes no options
    raise LookupError(f"no venue adapter registered as {type_name!r}")


def strategy_models(type_name: str) -> type[BaseModel] | None:
    if type_name == "market_making":
        return FakeMMParams
    raise LookupError(f"no strategy registered as {type_name!r}")


BASE = """\
risk:
  max_order_qty: "0.5"
  max_order_notional: "50000"
  max_position_per_venue: "1.0"
  max_position_total: 2
  max_orders_per_second: 50
venues:
  - name: alpha
    type: sim
    symbols: [BTC/USDT]
    options:
      latency_ms: 5
  - name: beta
    type: sim
    symbols: [BTC/USDT, ETH/USDT]
    options:
      latency_ms: 20
      maker_fee: "-0.0001"
strategy:
  type: market_making
  symbol: BTC/USDT
  params:
    order_size: "0.01"
"""


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def load(path: Path, env: dict[str, str] | None = None, **kw) -> AppConfig:
    kw.setdefault("venue_options_model", venue_models)
    kw.setdefault("strategy_params_model", strategy_models)
    kw.setdefault("secrets", SecretRegistry(environ={}))
    return load_config(path, env=env or {}, **kw)


def error_of(path: Path, env: dict[str, str] | None = None, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(path, env, **kw)
    err = info.value
    assert "\n" not in str(err), "a ConfigError must print as one line"
    assert "Traceback" not in str(err)
    return err


# --- the shipped files -------------------------------------------------------------------------


def test_embedded_default_config_loads_with_three_sim_venues():
    cfg = load_config(None, env={}, secrets=SecretRegistry(environ={}))
    assert DEFAULT_CONFIG_PATH == REPO / "config" / "default.yaml"
    assert [v.name for v in cfg.venues] == ["alpha", "beta", "gamma"]
    assert {v.type for v in cfg.venues} == {"sim"}
    assert all(v.symbols == ["BTC/USDT"] for v in cfg.venues)
    assert all(v.api_key is None and v.api_secret is None for v in cfg.venues)  # ${ALPHA_KEY:-} → none
    # each simulated venue is different
    assert len({tuple(sorted(v.options.items())) for v in cfg.venues}) == 3
    assert cfg.strategy.type == "market_making"
    assert cfg.strategy.venues == ["alpha", "beta", "gamma"]
    assert cfg.risk.max_order_qty == numbers.parse("0.5")
    assert cfg.risk.max_order_notional == 50_000 * numbers.SCALE
    assert cfg.engine.seed == 7
    assert cfg.metrics.port == 9464
    assert cfg.journal.path == Path("var/journal.sqlite")


def test_ccxt_example_takes_keys_from_environment():
    env = {"BINANCE_API_KEY": "k-0123456789abcdef", "BINANCE_API_SECRET": "s-fedcba9876543210"}
    cfg = load_config(REPO / "config" / "examples" / "ccxt-binance.yaml", env=env, secrets=SecretRegistry(environ={}))
    venue = cfg.venue("binance")
    assert venue.type == "ccxt"
    assert venue.api_key.reveal() == env["BINANCE_API_KEY"]
    assert venue.api_secret.get_secret_value() == env["BINANCE_API_SECRET"]
    assert cfg.metrics.port == 9464  # ${HFT_METRICS_PORT:-9464}


def test_ccxt_example_without_keys_names_the_variable_and_line():
    path = REPO / "config" / "examples" / "ccxt-binance.yaml"
    err = error_of(path, env={}, venue_options_model=None, strategy_params_model=None)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "${BINANCE_API_KEY}" in t)
    assert str(err).startswith(f"{path}:{line}: venues[0].api_key: environment variable BINANCE_API_KEY is not set")
    assert "(+1 more error)" in str(err)  # BINANCE_API_SECRET is missing too
    assert [i.path for i in err.issues] == [("venues", 0, "api_key"), ("venues", 0, "api_secret")]


# --- a valid file ------------------------------------------------------------------------------


def test_valid_config_with_option_models(tmp_path):
    cfg = load(write(tmp_path, BASE))
    alpha, beta = cfg.venues
    assert isinstance(alpha.options, FakeSimOptions) and alpha.options.latency_ms == 5
    assert beta.options.maker_fee == -100_000  # -0.0001 in fixed point
    assert isinstance(cfg.strategy.params, FakeMMParams)
    assert cfg.strategy.params.order_size == 10_000_000
    assert cfg.strategy.venues == ["alpha", "beta"]  # omitted → all venues
    assert cfg.risk.max_position_total == 2 * numbers.SCALE
    # defaults for omitted sections
    assert cfg.engine.status_interval_s == 1.0 and cfg.engine.seed is None
    assert cfg.metrics.host == "127.0.0.1" and cfg.log.level == "INFO" and cfg.log.file is None


def test_without_callbacks_options_stay_raw(tmp_path):
    cfg = load_config(write(tmp_path, BASE), env={}, secrets=SecretRegistry(environ={}))
    assert cfg.venues[1].options == {"latency_ms": 20, "maker_fee": "-0.0001"}
    assert cfg.strategy.params == {"order_size": "0.01"}


def test_log_level_is_case_insensitive(tmp_path):
    cfg = load(write(tmp_path, BASE + "log:\n  level: debug\n"))
    assert cfg.log.level == "DEBUG"


def test_yaml_anchors_and_merge_keys_work(tmp_path):
    text = BASE.replace(
        "    options:\n      latency_ms: 5\n", "    options: &common\n      latency_ms: 5\n"
    ).replace("    options:\n      latency_ms: 20\n", "    options:\n      <<: *common\n")
    cfg = load(write(tmp_path, text))
    assert cfg.venues[1].options.latency_ms == 5
    assert cfg.venues[1].options.maker_fee == -100_000  # own key beside the merged ones


# --- environment interpolation -----------------------------------------------------------------


def test_env_value_and_default(tmp_path):
    text = BASE + "metrics:\n  host: ${HOST}\n  port: ${PORT:-9100}\nlog:\n  file: ${LOGDIR:-/tmp}/hft-${RUN}.log\n"
    cfg = load(write(tmp_path, text), env={"HOST": "0.0.0.0", "RUN": "r7"})
    assert cfg.metrics.host == "0.0.0.0"
    assert cfg.metrics.port == 9100  # default, then validated as int
    assert cfg.log.file == Path("/tmp/hft-r7.log")


def test_empty_env_value_takes_the_default_like_the_shell(tmp_path):
    text = BASE + "metrics:\n  port: ${PORT:-9100}\n"
    assert load(write(tmp_path, text), env={"PORT": ""}).metrics.port == 9100
    assert load(write(tmp_path, text), env={"PORT": "9200"}).metrics.port == 9200


def test_dollar_dollar_brace_is_a_literal(tmp_path):
    text = BASE.replace("symbols: [BTC/USDT]\n", "symbols: [BTC/USDT]\n    api_key: \"a$${HOME}b$$c\"\n", 1)
    cfg = load(write(tmp_path, text), env={"HOME": "/root"})
    assert cfg.venues[0].api_key.reveal() == "a${HOME}b$$c"


def test_env_values_cannot_inject_yaml_structure(tmp_path):
    text = BASE + "metrics:\n  host: ${EVIL}\n"
    evil = "x\nport: 1\n{a: [1, 2]}"
    cfg = load(write(tmp_path, text), env={"EVIL": evil})
    assert cfg.metrics.host == evil
    assert cfg.metrics.port == 9464


def test_env_value_has_the_field_type_checked(tmp_path):
    p = write(tmp_path, BASE + "metrics:\n  port: ${PORT}\n")
    err = error_of(p, env={"PORT": "ninety"})
    assert str(err).startswith(f"{p}:25: metrics.port: Input should be a valid integer")
    assert "'ninety'" in str(err)


def test_missing_env_var_names_variable_key_path_and_line(tmp_path):
    beta = "symbols: [BTC/USDT, ETH/USDT]\n"
    p = write(tmp_path, BASE.replace(beta, beta + "    api_secret: ${BETA_SECRET}\n"))
    err = error_of(p)
    assert str(err) == f"{p}:16: venues[1].api_secret: environment variable BETA_SECRET is not set"
    assert (err.file, err.line, err.path) == (str(p), 16, ("venues", 1, "api_secret"))


def test_unclosed_and_malformed_references_are_errors(tmp_path):
    p = write(tmp_path, BASE + "metrics:\n  host: ${HOST\n")
    assert str(error_of(p)) == f"{p}:25: metrics.host: unclosed '${{' (write '$${{' for a literal '${{')"
    p = write(tmp_path, BASE + "metrics:\n  host: ${1BAD}\n")
    err = error_of(p)
    assert str(err).startswith(f"{p}:25: metrics.host: invalid reference '${{1BAD}}'")


def test_env_in_keys_is_not_interpolated(tmp_path):
    p = write(tmp_path, BASE + "metrics:\n  ${X}: 1\n")
    err = error_of(p, env={"X": "port"})
    assert str(err).startswith(f"{p}:25: metrics['${{X}}']: unknown key")


# --- file and YAML errors ----------------------------------------------------------------------


def test_file_not_found(tmp_path):
    p = tmp_path / "nope.yaml"
    assert str(error_of(p)) == f"{p}: file not found"


def test_directory_instead_of_file(tmp_path):
    assert str(error_of(tmp_path)) == f"{tmp_path}: is a directory, not a file"


def test_malformed_yaml_reports_line_and_column(tmp_path):
    p = write(tmp_path, "engine:\n  seed: 1\n  status_interval_s: [1, 2\nmetrics: {}\n")
    err = error_of(p)
    assert str(err).startswith(f"{p}:4:8: invalid YAML: ")
    assert (err.line, err.column) == (4, 8)


def test_tab_indentation_is_a_yaml_error_with_position(tmp_path):
    p = write(tmp_path, "engine:\n\tseed: 1\n")
    err = error_of(p)
    assert str(err).startswith(f"{p}:2:1: invalid YAML: found character '\\t'")


def test_duplicate_yaml_key_is_rejected_with_its_line(tmp_path):
    p = write(tmp_path, BASE + "metrics:\n  port: 1\n  port: 2\n")
    err = error_of(p)
    assert str(err).startswith(f"{p}:26:3: invalid YAML: duplicate key 'port'")


def test_top_level_must_be_a_mapping(tmp_path):
    p = write(tmp_path, "- a\n- b\n")
    assert str(error_of(p)) == f"{p}:1: the top level must be a mapping of sections, got a list"
    p = write(tmp_path, "# only a comment\n")
    assert str(error_of(p)) == f"{p}: the top level must be a mapping of sections, got an empty document"


def test_non_string_keys_are_rejected(tmp_path):
    p = write(tmp_path, BASE + "metrics:\n  yes: 1\n")
    err = error_of(p)
    assert str(err).startswith(f"{p}:24: metrics: keys must be strings, got a boolean True")


def test_invalid_utf8(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_bytes(b"engine:\n  seed: \xff\n")
    assert str(error_of(p)) == f"{p}:2: not valid UTF-8 (byte 16)"


# --- schema errors -----------------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path):
    p = write(tmp_path, BASE + "stratgey: {}\n")
    assert str(error_of(p)) == f"{p}:24: stratgey: unknown key; did you mean 'strategy'?"


def test_unknown_nested_key_lists_allowed_keys(tmp_path):
    p = write(tmp_path, BASE + "metrics:\n  colour: blue\n")
    assert str(error_of(p)) == f"{p}:25: metrics.colour: unknown key; allowed keys: enabled, host, port"


def test_unknown_key_in_a_list_item(tmp_path):
    p = write(tmp_path, BASE.replace("    type: sim\n", "    type: sim\n    simbols: [X/Y]\n", 1))
    assert str(error_of(p)) == f"{p}:10: venues[0].simbols: unknown key; did you mean 'symbols'?"


def test_unknown_key_inside_adapter_options(tmp_path):
    p = write(tmp_path, BASE.replace("      latency_ms: 20\n", "      latency: 20\n"))
    assert str(error_of(p)) == f"{p}:17: venues[1].options.latency: unknown key; did you mean 'latency_ms'?"


def test_unknown_key_inside_strategy_params(tmp_path):
    p = write(tmp_path, BASE + "    spread: 3\n")
    assert str(error_of(p)) == f"{p}:24: strategy.params.spread: unknown key; allowed keys: order_size, levels"


def test_wrong_type_in_adapter_options_has_full_path(tmp_path):
    p = write(tmp_path, BASE.replace("      latency_ms: 20\n", "      latency_ms: fast\n"))
    err = error_of(p)
    assert str(err) == (
        f"{p}:17: venues[1].options.latency_ms: Input should be a valid integer, "
        "unable to parse string as an integer, got 'fast'"
    )
    assert err.path == ("venues", 1, "options", "latency_ms")


def test_wrong_decimal_in_options(tmp_path):
    p = write(tmp_path, BASE.replace('maker_fee: "-0.0001"', "maker_fee: cheap"))
    err = error_of(p)
    assert str(err).startswith(f"{p}:18: venues[1].options.maker_fee: Input should be a valid decimal")
    assert "cheap" in str(err)


def test_wrong_type_scalar(tmp_path):
    p = write(tmp_path, BASE + "metrics:\n  port: [1]\n")
    assert str(error_of(p)) == f"{p}:25: metrics.port: Input should be a valid integer"
    p = write(tmp_path, BASE + "engine:\n  seed: 1.5\n")
    err = error_of(p)
    assert str(err).startswith(f"{p}:25: engine.seed: Input should be a valid integer")


def test_section_of_the_wrong_type(tmp_path):
    p = write(tmp_path, BASE + "engine: 5\n")
    assert str(error_of(p)) == f"{p}:24: engine: expected a mapping, got an integer"
    p = write(tmp_path, BASE.replace("symbols: [BTC/USDT]", "symbols: BTC/USDT", 1))
    assert str(error_of(p)) == f"{p}:10: venues[0].symbols: expected a list, got a string"
    p = write(tmp_path, BASE.replace("    options:\n      latency_ms: 5\n", "    options: [1]\n"))
    assert str(error_of(p)) == f"{p}:11: venues[0].options: expected a mapping, got a list"


def test_bad_enum_value(tmp_path):
    p = write(tmp_path, BASE + "log:\n  level: LOUD\n")
    assert str(error_of(p)) == f"{p}:25: log.level: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR', got 'LOUD'"


def test_missing_required_key_points_at_its_section(tmp_path):
    p = write(tmp_path, BASE.replace('  max_order_qty: "0.5"\n', ""))
    assert str(error_of(p)) == f"{p}:1: risk.max_order_qty: missing required key"


def test_missing_required_section_has_no_line(tmp_path):
    p = write(tmp_path, BASE.split("venues:")[0] + "strategy: {type: x, symbol: BTC/USDT}\n")
    err = error_of(p)
    assert str(err) == f"{p}: venues: missing required key"


def test_risk_limits_must_be_positive(tmp_path):
    p = write(tmp_path, BASE.replace('max_order_qty: "0.5"', 'max_order_qty: "-0.5"'))
    assert str(error_of(p)) == f"{p}:2: risk.max_order_qty: Input should be greater than 0, got -0.5"
    p = write(tmp_path, BASE.replace("max_orders_per_second: 50", "max_orders_per_second: 0"))
    assert str(error_of(p)) == f"{p}:6: risk.max_orders_per_second: Input should be greater than 0, got 0"


def test_excess_precision_is_rejected_not_rounded(tmp_path):
    p = write(tmp_path, BASE.replace('max_order_qty: "0.5"', "max_order_qty: 0.1234567891"))
    err = error_of(p)
    assert str(err).startswith(f"{p}:2: risk.max_order_qty: Input should be a valid decimal")
    assert "more than 9 decimal places" in str(err)


def test_bad_venue_name_and_symbol(tmp_path):
    p = write(tmp_path, BASE.replace("name: alpha", "name: Alpha One"))
    assert str(error_of(p)) == (
        f"{p}:8: venues[0].name: venue names use only a-z, 0-9, '_' and '-', got 'Alpha One'"
    )
    p = write(tmp_path, BASE.replace("symbols: [BTC/USDT]", "symbols: [btc/usdt]", 1))
    assert str(error_of(p)) == (
        f"{p}:10: venues[0].symbols[0]: symbols are unified BASE/QUOTE like BTC/USDT, got 'btc/usdt' (use upper case)"
    )


def test_at_least_one_venue(tmp_path):
    p = write(tmp_path, BASE.split("venues:")[0] + "venues: []\nstrategy: {type: market_making, symbol: BTC/USDT}\n")
    err = error_of(p)
    assert str(err).startswith(f"{p}:7: venues: List should have at least 1 item")


def test_several_errors_report_the_first_in_file_order(tmp_path):
    text = BASE.replace("max_orders_per_second: 50", "max_orders_per_second: lots") + "metrics:\n  port: x\n"
    p = write(tmp_path, text)
    err = error_of(p)
    assert str(err).startswith(f"{p}:6: risk.max_orders_per_second: ")
    assert str(err).endswith("(+1 more error)")
    assert [i.path for i in err.issues] == [("risk", "max_orders_per_second"), ("metrics", "port")]


# --- cross checks ------------------------------------------------------------------------------


def test_duplicate_venue_names(tmp_path):
    p = write(tmp_path, BASE.replace("name: beta", "name: alpha"))
    assert str(error_of(p)) == f"{p}:13: venues[1].name: duplicate venue name 'alpha' (also venues[0])"


def test_strategy_naming_an_unknown_venue(tmp_path):
    p = write(tmp_path, BASE.replace("  params:", "  venues: [alpha, delta]\n  params:"))
    assert str(error_of(p)) == f"{p}:22: strategy.venues[1]: unknown venue 'delta' (venues: alpha, beta)"


def test_strategy_symbol_must_be_traded_on_its_venues(tmp_path):
    p = write(tmp_path, BASE.replace("  symbol: BTC/USDT\n", "  symbol: ETH/USDT\n"))
    assert str(error_of(p)) == (
        f"{p}:21: strategy.symbol: ETH/USDT is not among the symbols of venue 'alpha' (BTC/USDT)"
    )
    # restricted to the venue that lists it, it is fine
    p = write(tmp_path, BASE.replace("  symbol: BTC/USDT\n", "  symbol: ETH/USDT\n  venues: [beta]\n"))
    assert load(p).strategy.venues == ["beta"]


def test_duplicate_symbol_in_a_venue(tmp_path):
    p = write(tmp_path, BASE.replace("[BTC/USDT, ETH/USDT]", "[BTC/USDT, BTC/USDT]"))
    assert str(error_of(p)) == f"{p}:15: venues[1].symbols: 'BTC/USDT' is listed twice"


def test_cross_checks_also_apply_to_direct_model_validation():
    data = yaml.safe_load(BASE.replace("name: beta", "name: alpha"))
    with pytest.raises(ValidationError, match=r"venues\[1\]\.name: duplicate venue name 'alpha'"):
        AppConfig.model_validate(data)


# --- adapter / strategy type lookup -----------------------------------------------------------


def test_unknown_venue_type_is_reported_at_type(tmp_path):
    beta = "    type: sim\n    symbols: [BTC/USDT, ETH/USDT]"
    p = write(tmp_path, BASE.replace(beta, beta.replace("sim", "nosuch")))
    assert str(error_of(p)) == (
        f"{p}:14: venues[1].type: unknown venue type 'nosuch': no venue adapter registered as 'nosuch'"
    )


def test_unknown_strategy_type(tmp_path):
    p = write(tmp_path, BASE.replace("type: market_making", "type: arbitrage"))
    assert str(error_of(p)) == (
        f"{p}:20: strategy.type: unknown strategy type 'arbitrage': no strategy registered as 'arbitrage'"
    )


def test_import_path_type_names_are_accepted_and_checked(tmp_path):
    p = write(tmp_path, BASE.replace("type: sim", "type: my_pkg.venues:MyAdapter", 1))
    err = error_of(p)  # accepted by the schema, then unknown to the lookup
    assert err.path == ("venues", 0, "type") and "my_pkg.venues:MyAdapter" in str(err)
    p = write(tmp_path, BASE.replace("type: sim", "type: 'no spaces:allowed here'", 1))
    assert str(error_of(p)).startswith(f"{p}:9: venues[0].type: expected a registered name like 'sim'")


def test_type_without_options_model_rejects_options(tmp_path):
    p = write(tmp_path, BASE.replace("type: sim", "type: bare", 1))
    assert str(error_of(p)) == f"{p}:11: venues[0].options: venue type 'bare' takes no options"
    p = write(tmp_path, BASE.replace("type: sim", "type: bare", 1).replace("    options:\n      latency_ms: 5\n", ""))
    assert load(p).venues[0].options == {}


# --- FixedDecimal and Secret -------------------------------------------------------------------


class Quantities(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: FixedDecimal


@pytest.mark.parametrize(
    ("raw", "fixed"),
    [("0.1", 100_000_000), (0.1, 100_000_000), (3, 3 * numbers.SCALE), ("1e-3", 1_000_000),
     (1e-9, 1), ("-2.5", -2_500_000_000), (61837.6, 61_837_600_000_000)],
)
def test_fixed_decimal_parses_exactly(raw, fixed):
    assert Quantities(q=raw).q == fixed


@pytest.mark.parametrize("raw", [True, "abc", "", 1e-10, "0.0000000001", float("nan"), [1], None])
def test_fixed_decimal_rejects(raw):
    with pytest.raises(ValidationError, match="valid decimal"):
        Quantities(q=raw)


def test_fixed_decimal_dumps_as_exact_string():
    m = Quantities(q="0.30")
    assert m.model_dump() == {"q": 300_000_000}
    assert m.model_dump(mode="json") == {"q": "0.3"}


def test_secret_never_prints_itself():
    s = Secret("hunter2-very-secret")
    assert str(s) == "***" and f"{s}" == "***" and repr(s) == "Secret('***')"
    assert "hunter2" not in f"{s!r} {s:>10} {[s]} {dict(k=s)}"
    assert s.reveal() == s.get_secret_value() == "hunter2-very-secret"
    assert s == Secret("hunter2-very-secret") and s != Secret("other")
    assert not Secret("")


def test_secret_fields_are_masked_in_repr_and_json_dump(tmp_path):
    p = write(tmp_path, BASE.replace("symbols: [BTC/USDT]", "symbols: [BTC/USDT]\n    api_secret: ${S}", 1))
    cfg = load(p, env={"S": "sekrit-value-42"})
    venue = cfg.venues[0]
    assert "sekrit" not in repr(cfg) and "sekrit" not in str(venue)
    assert cfg.model_dump(mode="json")["venues"][0]["api_secret"] == "***"
    assert isinstance(cfg.model_dump()["venues"][0]["api_secret"], Secret)  # python mode keeps the wrapper
    assert venue.api_secret.reveal() == "sekrit-value-42"
    assert venue.api_key is None


# --- dump_config -------------------------------------------------------------------------------


def test_dump_config_hides_secrets_from_env(tmp_path):
    text = BASE.replace(
        "symbols: [BTC/USDT]\n", "symbols: [BTC/USDT]\n    api_key: ${K}\n    api_secret: ${S}\n", 1
    ).replace("      latency_ms: 5\n", "      latency_ms: 5\n      password: ${P}\n")
    env = {"K": "key-AAAA1111", "S": "secret-BBBB2222", "P": "pw-CCCC3333"}
    registry = SecretRegistry(environ={})
    cfg = load(write(tmp_path, text), env=env, secrets=registry)
    # masked by the Secret type itself, even with an empty registry
    out = dump_config(cfg, secrets=SecretRegistry(environ={}))
    for value in env.values():
        assert value not in out
    dumped = yaml.safe_load(out)
    assert dumped["venues"][0]["api_key"] == "***"
    assert dumped["venues"][0]["api_secret"] == "***"
    assert dumped["venues"][0]["options"]["password"] == "***"
    # and the registry filled while loading knows all three
    assert all(v in registry for v in env.values())


def test_dump_config_masks_credentials_in_raw_options(tmp_path):
    # no options model consulted: the password is a plain string in a dict
    text = BASE.replace("      latency_ms: 5\n", "      latency_ms: 5\n      password: ${P}\n      note: plain\n")
    registry = SecretRegistry(environ={})
    cfg = load_config(write(tmp_path, text), env={"P": "pw-DDDD4444"}, secrets=registry)
    assert cfg.venues[0].options["password"] == "pw-DDDD4444"
    out = dump_config(cfg, secrets=SecretRegistry(environ={}))
    assert "pw-DDDD4444" not in out
    assert yaml.safe_load(out)["venues"][0]["options"] == {"latency_ms": 5, "password": "***", "note": "plain"}
    assert "pw-DDDD4444" in registry  # registered because the key looks like a credential


def test_dump_of_default_config_loads_back_to_the_same_config(tmp_path):
    cfg = load_config(None, env={}, secrets=SecretRegistry(environ={}))
    out = dump_config(cfg)
    again = load_config(write(tmp_path, out), env={}, secrets=SecretRegistry(environ={}))
    assert again.model_dump(mode="json") == cfg.model_dump(mode="json")
    assert "'0.5'" in out  # decimals as exact strings


def test_format_path():
    assert format_path(("venues", 1, "fees", "maker")) == "venues[1].fees.maker"
    assert format_path((0, "a")) == "[0].a"
    assert format_path(("options", "a.b")) == "options['a.b']"
    assert format_path(()) == ""
