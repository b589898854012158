"""A fill the engine acknowledged just before ``kill -9`` is there after the restart.

The engine journals in batches (a background writer commits every 50 ms), so a fill it has
already counted can die with the process before it reaches the file. The test watches the
engine's own ``hft_fills_total`` and sends SIGKILL the moment it goes up, until a kill lands in
that window (the journal holds fewer of the run's fills than the engine had counted), then
restarts: the fill must be in the journal — recovered from the venue by the new run's
reconciliation — and positions must equal the servers' balances.
"""

from __future__ import annotations

import pytest

ATTEMPTS = 10  # each attempt is a kill right after a fill; one usually suffices


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_fill_acknowledged_just_before_kill9_is_recovered_after_restart(soak, tmp_path):
    s = soak.Soak(tmp_path / "w", seed=5, faults=False, out=print)
    try:
        s.start()
        run = s.start_engine()
        caught = None
        for _ in range(ATTEMPTS):
            killed_after_fill = s.kill(run, after_fill=True)
            lacking = set(s.unrecovered)  # server fills the journal does not have at the kill
            acked = run.acked_unjournaled  # ... that the engine had counted
            run = s.start_engine()  # checks every lacking fill is journaled once the new run trades
            if killed_after_fill and acked:
                caught = (lacking, acked)
                break
        assert caught is not None, f"no kill landed between a fill's count and its journal commit in {ATTEMPTS} tries"
        lacking, acked = caught
        assert len(lacking) >= acked > 0

        fills = s.journal_fills()
        reader = soak.JournalReader(s.journal_path)
        try:
            session = reader.last_session()
        finally:
            reader.close_reader()
        for key in lacking:  # journaled by the new run: recovered from the venue, not from the dead run's file
            assert key in fills and fills[key].session_id == session.session_id, key
        assert s.report.lost_fills == [], s.report.lost_fills

        s.check_running(run, rounds=2)
        s.stop_and_check(run)
        print("\n" + s.report.format())
        assert s.report.recovered_after_restart >= len(lacking)
        assert s.report.ok, s.report.format()
    finally:
        s.close()
