"""A journal that cannot commit stops new orders (cancels go on) and loses nothing once it can again."""

from __future__ import annotations

import asyncio
import sqlite3

from prometheus_client import CollectorRegistry

from hft.engine import Engine
from hft.journal import JournalReader
from hft.metrics import Metrics
from hft.model import OrderStatus
from hft.runner import run_engine
from tests.integration.test_run_end_to_end import _load

HANG_GUARD_S = 60.0  # the run ends when the scenario is done; this only bounds a broken one


async def test_a_locked_journal_holds_new_orders_until_it_commits_again():
    cfg, venues, strategies = _load()
    cfg.journal.max_commit_delay_s = 0.3
    seen: dict = {}

    def sent(engine: Engine) -> int:
        return sum(st.orders for st in engine.stats.values())

    def started(engine: Engine) -> None:
        canceled: list[str] = []
        engine.add_order_listener(
            lambda order, fill: canceled.append(order.client_order_id)
            if fill is None and order.status is OrderStatus.CANCELED else None
        )

        async def lock_the_file() -> None:
            while sent(engine) < 10:  # trading, and journaling
                await asyncio.sleep(0.02)
            other = sqlite3.connect(cfg.journal.path, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")  # another process holds the database: the writer cannot commit
            try:
                while not engine.risk_denials.get("journal_down"):
                    await asyncio.sleep(0.01)
                seen["stalled"] = engine.journal.behind
                at_first_denial = sent(engine)
                canceled_before = len(canceled)
                await asyncio.sleep(1.0)  # the market moves; the strategy keeps asking
                for _ in range(500):  # and at least one stale quote is pulled meanwhile
                    if len(canceled) > canceled_before:
                        break
                    await asyncio.sleep(0.02)
                seen["canceled_while_stalled"] = len(canceled) - canceled_before
                seen["sent_while_stalled"] = sent(engine) - at_first_denial
                seen["denied"] = engine.risk_denials["journal_down"]
            finally:
                other.execute("COMMIT")
                other.close()
            at_release = sent(engine)
            while engine.journal.behind:
                await asyncio.sleep(0.01)
            while sent(engine) == at_release:  # trading resumes (the run's duration bounds the wait)
                await asyncio.sleep(0.02)
            seen["sent_after"] = sent(engine) - at_release
            engine.request_stop()

        engine.spawn(lock_the_file(), "lock")

    summary = await run_engine(cfg, venues, strategies, duration=HANG_GUARD_S, metrics=Metrics(CollectorRegistry()),
                               out=lambda s: None, on_started=started)
    assert summary is not None and not summary.journal_error
    assert seen["stalled"] is True and seen["denied"] > 0
    assert seen["sent_while_stalled"] == 0  # nothing left that the journal had not recorded
    assert seen["canceled_while_stalled"] > 0  # stale quotes are still pulled
    assert seen["sent_after"] > 0  # trading resumed
    reader = JournalReader(cfg.journal.path)
    try:
        journaled = reader.orders()
    finally:
        reader.close_reader()
    assert len(journaled) == sum(st.orders for st in summary.venues.values())  # every intent, once
    assert summary.open_orders_left == {"alpha": 0, "beta": 0, "gamma": 0}
