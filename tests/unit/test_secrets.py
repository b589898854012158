"""Secret redaction: the registry, redact(), and the logging filter on real loggers."""

from __future__ import annotations

import io
import logging
import textwrap
import uuid
from pathlib import Path

import pytest

from hft import secrets as secrets_mod
from hft.config import load_config
from hft.secrets import (
    DEFAULT_REGISTRY,
    RedactingFilter,
    Secret,
    SecretRegistry,
    install_log_redaction,
    looks_secret,
    redact,
    register_secret,
)

CONFIG = """\
risk:
  max_order_qty: "0.5"
  max_order_notional: "50000"
  max_position_per_venue: "1"
  max_position_total: "2"
  max_orders_per_second: 5
venues:
  - name: live
    type: ccxt
    symbols: [BTC/USDT]
    api_key: ${LIVE_KEY}
    api_secret: ${LIVE_SECRET}
strategy:
  type: market_making
  symbol: BTC/USDT
"""

KEY = "pk-7f3a9c1e5b2d4680"
SECRET = "sk-Zq8Xw2Vu4Ts6Rp0N"


@pytest.fixture
def loaded(tmp_path: Path):
    path = tmp_path / "live.yaml"
    path.write_text(CONFIG)
    registry = SecretRegistry(environ={})
    cfg = load_config(path, env={"LIVE_KEY": KEY, "LIVE_SECRET": SECRET}, secrets=registry)
    return cfg, registry


def make_logger(flt: logging.Filter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(flt)
    logger = logging.getLogger(f"test.hft.secrets.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, stream


def test_loading_registers_env_secrets(loaded):
    cfg, registry = loaded
    assert KEY in registry and SECRET in registry
    assert cfg.venues[0].api_secret.reveal() == SECRET


def test_redact_removes_loaded_secret_from_arbitrary_text(loaded):
    _, registry = loaded
    text = f"POST /api/v3/order?signature=abc&apiKey={KEY} failed; secret was {SECRET}!"
    out = registry.redact(text)
    assert KEY not in out and SECRET not in out
    assert out == "POST /api/v3/order?signature=abc&apiKey=*** failed; secret was ***!"


def test_redact_masks_longest_value_first():
    registry = SecretRegistry(["abcd1234", "abcd1234-extended"], environ={})
    assert registry.redact("x abcd1234-extended y abcd1234 z") == "x *** y *** z"


def test_short_and_empty_values_are_not_registered():
    registry = SecretRegistry(environ={})
    registry.register("")
    registry.register("ab")
    registry.register(None)
    assert len(registry) == 0
    assert registry.redact("ab cd") == "ab cd"


def test_registering_a_secret_object():
    registry = SecretRegistry(environ={})
    registry.register(Secret("wrapped-value-99"))
    assert registry.redact("is wrapped-value-99") == "is ***"


def test_env_vars_with_secret_looking_names_are_redacted_defensively():
    environ = {
        "EXCHANGE_API_TOKEN": "tok-5555666677778888",
        "DB_PASSWORD": "correct-horse-battery",
        "KEYTIMEOUT": "1",  # too short to be a credential
        "HOME": "/home/trader",  # not a secret-looking name
    }
    registry = SecretRegistry(environ=environ)
    out = registry.redact("tok-5555666677778888 correct-horse-battery home=/home/trader timeout=1")
    assert out == "*** *** home=/home/trader timeout=1"


def test_env_heuristic_follows_changes_and_can_be_disabled():
    environ: dict[str, str] = {}
    registry = SecretRegistry(environ=environ)
    assert registry.redact("later-secret-value") == "later-secret-value"
    environ["LATER_SECRET"] = "later-secret-value"
    assert registry.redact("later-secret-value") == "***"
    assert SecretRegistry(environ={}).redact("later-secret-value") == "later-secret-value"


def test_env_heuristic_reads_os_environ_by_default(monkeypatch):
    value = f"env-{uuid.uuid4().hex}"
    monkeypatch.setenv("HFT_TEST_PASSPHRASE", value)
    assert SecretRegistry().redact(f"[{value}]") == "[***]"


def test_looks_secret_names():
    assert all(map(looks_secret, ["API_KEY", "api_secret", "GITHUB_TOKEN", "db_password", "okx_passphrase"]))
    assert not any(map(looks_secret, ["HOME", "PATH", "latency_ms", "symbol"]))


def test_module_level_functions_use_the_default_registry():
    value = f"default-{uuid.uuid4().hex}"
    assert redact(value) == value
    register_secret(value)
    assert value in DEFAULT_REGISTRY
    assert redact(f"a {value} b") == "a *** b"
    assert secrets_mod.DEFAULT_REGISTRY is DEFAULT_REGISTRY


def test_filter_redacts_secret_in_message_and_in_args(loaded):
    _, registry = loaded
    logger, stream = make_logger(RedactingFilter(registry))
    logger.info(f"signing with {SECRET}")
    logger.warning("key %s rejected (%d tries), config=%r", KEY, 3, {"secret": SECRET})
    out = stream.getvalue()
    assert KEY not in out and SECRET not in out
    lines = out.splitlines()
    assert lines[0].endswith("signing with ***")
    assert lines[1].endswith("key *** rejected (3 tries), config={'secret': '***'}")


def test_filter_redacts_exception_text(loaded):
    _, registry = loaded
    logger, stream = make_logger(RedactingFilter(registry))
    try:
        raise RuntimeError(f"auth failed for {KEY}")
    except RuntimeError:
        logger.exception("request failed")
    out = stream.getvalue()
    assert "RuntimeError: auth failed for ***" in out
    assert KEY not in out


def test_filter_leaves_ordinary_records_alone():
    logger, stream = make_logger(RedactingFilter(SecretRegistry(environ={})))
    logger.info("quoted %d levels at %s", 2, "61837.6")
    assert stream.getvalue().endswith("quoted 2 levels at 61837.6\n")


def test_install_log_redaction_covers_records_from_child_loggers():
    registry = SecretRegistry(["root-handler-secret"], environ={})
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    child = logging.getLogger(f"hft.test.{uuid.uuid4().hex}")
    old_level = child.level
    child.setLevel(logging.INFO)
    try:
        flt = install_log_redaction(registry)
        assert flt in handler.filters
        install_log_redaction(registry)  # idempotent
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        child.info("token=%s", "root-handler-secret")
    finally:
        root.removeHandler(handler)
        child.setLevel(old_level)
    assert stream.getvalue() == "token=***\n"


def test_install_log_redaction_on_a_given_logger():
    registry = SecretRegistry(["given-logger-secret"], environ={})
    logger = logging.getLogger(f"test.hft.given.{uuid.uuid4().hex}")
    logger.propagate = False
    stream = io.StringIO()
    logger.addHandler(logging.StreamHandler(stream))
    install_log_redaction(registry, logger=logger)
    logger.error("%s", "given-logger-secret")
    assert stream.getvalue() == "***\n"


def test_secret_config_error_messages_are_redacted(tmp_path):
    # a credential interpolated into a non-secret field that then fails validation
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(CONFIG) + "metrics:\n  port: ${LIVE_TOKEN}\n")
    from hft.config import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(path, env={"LIVE_KEY": KEY, "LIVE_SECRET": SECRET, "LIVE_TOKEN": "tok-shouldnotshow"},
                    secrets=SecretRegistry(environ={}))
    assert "metrics.port" in str(info.value)
    assert "tok-shouldnotshow" not in str(info.value)
