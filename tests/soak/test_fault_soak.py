"""The fault soak: three exchange servers with faults on, ``kill -9`` of the engine and restarts.

``make test`` runs the short form (10 kill -9 restarts of ~2 s each). The long form runs with
``HFT_SOAK_LONG=1`` (``make soak``: 50 restarts of ~10 s); ``HFT_SOAK_RESTARTS``,
``HFT_SOAK_RUN_SECONDS`` and ``HFT_SOAK_SEED`` override either. Run with ``-s`` to see the summary.
What is checked is listed in ``scripts/soak.py``; every check is an invariant against the servers'
own state, none is a timing.
"""

from __future__ import annotations

import os

import pytest

LONG = os.environ.get("HFT_SOAK_LONG", "") not in ("", "0")
RESTARTS = int(os.environ.get("HFT_SOAK_RESTARTS") or (50 if LONG else 10))
RUN_SECONDS = float(os.environ.get("HFT_SOAK_RUN_SECONDS") or (10.0 if LONG else 2.0))
SEED = int(os.environ.get("HFT_SOAK_SEED") or 1)
# a hang guard, not a threshold: start-up, ~1.5 × the mean run and the checks, with room for a slow machine
TIMEOUT_S = int(RESTARTS * (RUN_SECONDS * 1.5 + 45) + 300)


@pytest.mark.soak
@pytest.mark.timeout(TIMEOUT_S)
def test_fault_soak_with_kill9_restarts(soak, tmp_path):
    report = soak.run_soak(RESTARTS, RUN_SECONDS, SEED, tmp_path / "soak")
    print("\n" + report.format())

    assert report.kills == RESTARTS >= 10
    assert report.runs_started == RESTARTS + 1, report.format()
    assert report.ok, report.format()
    # the faults really happened (the servers' own counters), and so did kills right after a fill
    injected = {k: sum(f.get(k, 0) for f in report.faults.values()) for k in
                ("drop_after_execute", "user_duplicate", "user_reorder", "depth_gap", "error")}
    assert all(injected.values()), injected
    assert sum(report.admin_drops.values()) + sum(f.get("ws_drop", 0) for f in report.faults.values()) > 0
    assert report.kills_after_fill > 0
    assert sum(report.fills_checked.values()) > 0 and report.fills_checked_running > 0
    assert report.resyncs > 0 and report.books_compared == 3 * report.runs_started  # every book, every run
