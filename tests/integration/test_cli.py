"""The command line as a user meets it: one-line errors with exit 2, redacted dumps, registered venues."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HFT = [sys.executable, "-m", "hft.cli"]


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*HFT, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          cwd=cwd or REPO, timeout=60)


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "default.yaml").read_text())


BROKEN = {
    "malformed yaml": ("engine:\n  seed: [1, 2\nvenues: []\n", ["bad.yaml:"]),
    "unknown key": (None, ["bad.yaml:", "engine.sead"]),
    "wrong type": (None, ["bad.yaml:", "venues[1].options.latency_ms"]),
    "missing env var": (None, ["bad.yaml:", "venues[0].api_secret", "HFT_TEST_UNSET_SECRET"]),
}


def _write_broken(kind: str, path: Path) -> None:
    text, _ = BROKEN[kind]
    if text is not None:
        path.write_text(text)
        return
    cfg = default_config()
    if kind == "unknown key":
        cfg["engine"]["sead"] = 7
    elif kind == "wrong type":
        cfg["venues"][1]["options"]["latency_ms"] = "fast"
    elif kind == "missing env var":
        cfg["venues"][0]["api_secret"] = "${HFT_TEST_UNSET_SECRET}"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.mark.parametrize("kind", list(BROKEN))
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_broken_config_is_one_line_with_location_and_exit_2(tmp_path, kind, command):
    path = tmp_path / "bad.yaml"
    _write_broken(kind, path)
    args = [command, str(path)] if command == "check-config" else ["run", "-c", str(path), "--duration", "1"]
    out = run(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for part in BROKEN[kind][1]:
        assert part in lines[0], (part, lines[0])


def test_check_config_redacts_secrets_from_the_environment(tmp_path):
    cfg = default_config()
    cfg["venues"][0]["api_key"] = "${HFT_TEST_KEY}"
    cfg["venues"][0]["api_secret"] = "${HFT_TEST_SECRET}"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    secret = "xq-very-secret-value-42"
    out = run("check-config", str(path), env={"HFT_TEST_KEY": "key-value-abcdef", "HFT_TEST_SECRET": secret})
    assert out.returncode == 0, out.stderr
    assert secret not in out.stdout and "key-value-abcdef" not in out.stdout
    assert "api_secret: '***'" in out.stdout or "api_secret: ***" in out.stdout
    assert "venues:" in out.stdout and "alpha" in out.stdout


def test_venues_lists_registered_adapters_with_capabilities():
    out = run("venues")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ccxt") and "\nsim " in out.stdout
    assert "capabilities:" in out.stdout and "post_only" in out.stdout


def test_halt_without_a_running_engine_says_so(tmp_path):
    cfg = default_config()
    cfg["engine"]["pid_file"] = str(tmp_path / "none.pid")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = run("halt", "-c", str(path))
    assert out.returncode == 1 and "no running engine" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("content", ["not sqlite", "other sqlite"])
def test_run_on_a_file_that_is_not_our_journal_stops_with_one_line_and_touches_nothing(tmp_path, content):
    journal = tmp_path / "journal.sqlite"
    if content == "not sqlite":
        journal.write_bytes(b"hello, this is not a database" * 100)
    else:
        import sqlite3

        con = sqlite3.connect(journal)
        con.execute("CREATE TABLE notes (x)")
        con.commit()
        con.close()
    before = journal.read_bytes()
    cfg = default_config()
    cfg["journal"]["path"] = str(journal)
    cfg["metrics"]["enabled"] = False
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = run("run", "-c", str(path), "--duration", "1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(journal) in errors[0], out.stdout + out.stderr
    assert journal.read_bytes() == before
