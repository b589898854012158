"""The market maker's quote decisions, driven through a recording stand-in for the engine (no loop)."""

from __future__ import annotations

from hft.book import ConsolidatedBook
from hft.clock import ManualClock
from hft.model import Instrument, Order, OrderStatus, Side
from hft.numbers import parse as P
from hft.portfolio import Portfolio
from hft.risk import RiskLimits
from strategies.market_making import MarketMakingParams, MarketMakingStrategy
from strategies.quoting import VenueQuoteInput, compute_quotes

SYMBOL = "BTC/USDT"
TICK = P("0.01")


class Ctx:
    """The trading API the strategy uses: books, portfolio, clock; records sends and cancels in order."""

    def __init__(self, venues: list[str]) -> None:
        self.clock = ManualClock()
        self.limits = RiskLimits(P("1"), P("100000"), P("1"), P("2"), 50.0)
        self.book = ConsolidatedBook(SYMBOL)
        for v in venues:
            self.book.add_venue(v)
        self.portfolio_ = Portfolio(venues)
        self.instruments = {v: Instrument(v, SYMBOL, "BTC", "USDT", TICK, P("0.00001"), P("0.00001"), P("5"))
                            for v in venues}
        self.deny: str | None = None  # deny every order (as the pre-trade checks would), or let it go
        self.calls: list[tuple] = []
        self._seqs = dict.fromkeys(venues, 0)

    def consolidated(self, symbol: str) -> ConsolidatedBook:
        return self.book

    def portfolio(self, symbol: str) -> Portfolio:
        return self.portfolio_

    def instrument(self, venue: str, symbol: str) -> Instrument:
        return self.instruments[venue]

    def submit_order(self, venue, symbol, side, qty, price=None, *, post_only=False, tag="", **_kw):
        self.calls.append(("submit", venue, side, price))
        if self.deny is not None:
            return None
        return Order(f"c{len(self.calls)}", venue, symbol, side, qty, price, post_only=post_only, tag=tag)

    def cancel_order(self, order: Order) -> bool:
        self.calls.append(("cancel", order.venue, order.side, order.price))
        order.cancel_requested_ns = self.clock.mono_ns()
        return True

    def show(self, venue: str, bid: str, ask: str, size: str = "1") -> None:
        """The venue's whole book is now one level a side (a snapshot)."""
        self._seqs[venue] += 1
        self.book.apply_snapshot(venue, [(P(bid), P(size))], [(P(ask), P(size))], self._seqs[venue],
                                 self.clock.mono_ns())

    def sends(self) -> list[tuple]:
        return [c for c in self.calls if c[0] == "submit"]


def strategy(ctx: Ctx, venues: list[str], **params) -> MarketMakingStrategy:
    s = MarketMakingStrategy(ctx, SYMBOL, venues, MarketMakingParams(order_size="0.01", **params))
    s.on_start()
    return s


def tick(ctx: Ctx, s: MarketMakingStrategy, venue: str, bid: str, ask: str) -> None:
    ctx.show(venue, bid, ask)
    s.on_book(venue, SYMBOL)


def test_a_denied_slot_waits_out_its_hold_instead_of_asking_again_on_every_change():
    ctx = Ctx(["a"])
    s = strategy(ctx, ["a"], denial_hold_s=0.5)
    ctx.deny = "order_rate"
    tick(ctx, s, "a", "59999", "60001")
    assert len(ctx.sends()) == 4  # bid and ask on two levels, all denied
    for i in range(1, 6):  # the top keeps moving within the hold: nothing is asked again
        ctx.clock.advance(50_000_000)
        tick(ctx, s, "a", f"{59999 + i}", f"{60001 + i}")
    assert len(ctx.sends()) == 4
    ctx.clock.advance(300_000_000)  # 0.55 s after the denials
    ctx.deny = None
    tick(ctx, s, "a", "59990", "59992")
    assert len(ctx.sends()) == 8 and len(s.quotes) == 4


def test_without_a_hold_a_denied_slot_is_asked_for_on_the_next_change():
    ctx = Ctx(["a"])
    s = strategy(ctx, ["a"], denial_hold_s=0)
    ctx.deny = "order_rate"
    tick(ctx, s, "a", "59999", "60001")
    ctx.clock.advance(1_000)
    tick(ctx, s, "a", "60000", "60002")
    assert len(ctx.sends()) == 8


def test_quotes_are_compute_quotes_kept_off_each_venue_opposite_best_a_tick_apart():
    ctx = Ctx(["a", "b"])
    s = strategy(ctx, ["a", "b"])
    ctx.show("a", "60050", "60052")  # a's bid is above b's ask: the consolidated book is crossed
    tick(ctx, s, "b", "59948", "59950")
    sent = {(v, side): [] for v in "ab" for side in Side}
    for _, venue, side, price in ctx.sends():
        sent[venue, side].append(price)
    # b's bids would cross b's own ask, a's asks a's own bid: each is moved just outside, levels a tick apart
    assert sent["b", Side.BUY] == [P("59949.99"), P("59949.98")]
    assert sent["a", Side.SELL] == [P("60050.01"), P("60050.02")]
    # the other sides are the model's quotes as they are
    inputs = [VenueQuoteInput(v, ctx.instruments[v], 0, P("1")) for v in "ab"]
    model = compute_quotes(s.fair, s.volatility.sigma_price(s.fair), 0, inputs, s.quote_params, P("2"))
    assert sent["a", Side.BUY] == [q.price for q in model if q.venue == "a" and q.side is Side.BUY]
    assert sent["b", Side.SELL] == [q.price for q in model if q.venue == "b" and q.side is Side.SELL]


def test_a_free_slot_is_quoted_before_stale_quotes_are_cancelled():
    ctx = Ctx(["a"])
    s = strategy(ctx, ["a"])
    tick(ctx, s, "a", "59999", "60001")
    assert len(s.quotes) == 4
    filled = s.quotes["a", Side.BUY, 0]
    filled.filled_qty = filled.qty
    filled.status = OrderStatus.FILLED
    s.on_order_update(filled)  # the slot is free
    del ctx.calls[:]
    tick(ctx, s, "a", "60029", "60031")  # 5 bp up: every resting quote is stale
    kinds = [c[0] for c in ctx.calls]
    assert kinds == ["submit", "cancel", "cancel", "cancel"]
    assert ctx.calls[0][1:3] == ("a", Side.BUY)
