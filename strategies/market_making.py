"""Multi-venue market making around a consolidated fair price.

On every book change the strategy takes the fair price (micro-price or mid of
the consolidated book), updates its volatility estimate, asks
:func:`strategies.quoting.compute_quotes` for the desired ladder on every
venue whose book is valid (inventory-skewed, Avellaneda–Stoikov style, within
position limits), and reconciles it with what rests: a quote within the
refresh tolerance stays (no cancel/replace for small moves), others are
cancelled and replaced. A venue whose book is invalid or stale gets no quotes
and its resting ones are pulled.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hft import numbers
from hft.config import FixedDecimal
from hft.model import Fill, Order, Side
from hft.strategy import Strategy
from strategies.hedging import HedgeParams, InventoryHedger
from strategies.quoting import (
    QuoteParams,
    VenueQuoteInput,
    VolatilityEstimator,
    compute_quotes,
    micro_price,
    mid_price,
    needs_refresh,
)


_TAGS = {(side, level): f"mm:{side.name}:{level}" for side in Side for level in range(20)}


class MarketMakingParams(BaseModel):
    """``strategy.params`` of ``type: market_making`` (see strategies/quoting.py for the model's units)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    order_size: FixedDecimal = Field(description="Base quantity per quote level, e.g. '0.01'")
    levels: int = Field(2, ge=1, le=20, description="Quote levels per side and venue")
    level_spacing_bps: float = Field(2.0, ge=0, description="Extra distance between levels, bp of fair")
    risk_aversion: float = Field(0.1, gt=0, description="A-S gamma per bp: inventory skew and spread")
    arrival_intensity: float = Field(1.0, gt=0, description="A-S k per bp: fill intensity decay")
    horizon_s: float = Field(30.0, ge=0, description="A-S horizon T-t in seconds (constant)")
    min_spread_bps: float = Field(2.0, ge=0, description="Floor of the bid-ask spread, bp of fair")
    max_spread_bps: float = Field(50.0, gt=0, description="Cap of the bid-ask spread, bp of fair")
    refresh_tolerance_bps: float = Field(1.0, ge=0, description="Keep a quote while within this of the target")
    fair_price: Literal["micro", "mid"] = Field("micro", description="Fair price from the consolidated top of book")
    volatility_halflife_s: float = Field(30.0, gt=0, description="EWMA half-life of the volatility estimate")
    initial_volatility_bps: float = Field(1.0, ge=0, description="Volatility prior, bp per sqrt(second)")
    volatility_sample_s: float = Field(1.0, ge=0, description="Sample the fair price at most this often (keeps bid-ask bounce out)")
    max_position_per_venue: FixedDecimal | None = Field(None, description="Default: risk.max_position_per_venue")
    max_position_total: FixedDecimal | None = Field(None, description="Default: risk.max_position_total")
    hedge: HedgeParams | None = Field(None, description="Hedge inventory beyond a threshold through the router")


class MarketMakingStrategy(Strategy):
    """Quotes bid and ask ladders on every configured venue; see the module docstring."""

    Params = MarketMakingParams

    def on_start(self) -> None:
        p: MarketMakingParams = self.params
        self.quote_params = QuoteParams(
            order_size=p.order_size, levels=p.levels, level_spacing_bps=p.level_spacing_bps,
            risk_aversion=p.risk_aversion, arrival_intensity=p.arrival_intensity, horizon_s=p.horizon_s,
            min_spread_bps=p.min_spread_bps, max_spread_bps=p.max_spread_bps,
            refresh_tolerance_bps=p.refresh_tolerance_bps,
        )
        limits = self.ctx.limits
        self.max_venue = p.max_position_per_venue if p.max_position_per_venue is not None else limits.max_position_per_venue
        self.max_total = p.max_position_total if p.max_position_total is not None else limits.max_position_total
        self.volatility = VolatilityEstimator(p.volatility_halflife_s, p.initial_volatility_bps, p.volatility_sample_s)
        self.use_micro = p.fair_price == "micro"
        self.book = self.ctx.consolidated(self.symbol)
        self.portfolio = self.ctx.portfolio(self.symbol)
        self.instruments = {v: self.ctx.instrument(v, self.symbol) for v in self.venues}
        # (venue, side, level) -> our resting order for that slot
        self.quotes: dict[tuple[str, Side, int], Order] = {}
        self.slot_of: dict[str, tuple[str, Side, int]] = {}
        self.fair = 0
        self.venue_books = {v: self.book.venue_book(v) for v in self.venues}
        positions = self.portfolio.by_venue
        self._inputs = [
            (VenueQuoteInput(v, self.instruments[v], 0, self.max_venue), positions[v]) for v in self.venues
        ]
        # What the last decision saw; a book event that changes none of it changes no quote.
        self._seen_top: tuple | None = None
        self._seen_venue_top: dict[str, tuple] = {}
        self._dirty = True
        self.hedger = InventoryHedger(self.ctx, self.symbol, p.hedge) if p.hedge is not None else None

    def on_book(self, venue: str, symbol: str) -> None:
        book = self.book
        bid = book.bid
        ask = book.ask
        vb = self.venue_books.get(venue)
        venue_top = (vb.bid, vb.ask) if vb is not None else None
        top = (bid, ask)
        if not self._dirty and top == self._seen_top and venue_top == self._seen_venue_top.get(venue):
            return  # a change below the top of book: nothing to re-quote
        self._dirty = False
        self._seen_top = top
        self._seen_venue_top[venue] = venue_top
        if bid is None or ask is None:
            self._pull_inactive()  # no two-sided market: quote nothing new
            return
        # A crossed consolidated book (one venue's bid above another's ask) still has a fair
        # price; quotes are kept off each venue's own opposite side in _reconcile.
        fair = micro_price(bid[0], bid[1], ask[0], ask[1]) if self.use_micro else mid_price(bid[0], ask[0])
        self.fair = fair
        now = self.ctx.clock.mono_ns()
        self.volatility.update(fair, now)
        inputs = []
        for venue_input, position in self._inputs:
            if book.is_active(venue_input.venue):
                venue_input.position = position.qty
                inputs.append(venue_input)
        desired = compute_quotes(
            fair, self.volatility.sigma_price(fair), self.portfolio.total.qty, inputs, self.quote_params,
            self.max_total,
        )
        self._reconcile(desired)
        if self.hedger is not None:
            self.hedger.maybe_hedge(now)

    def _reconcile(self, desired: list) -> None:
        """Send new quotes first (the latency that matters), then the cancels of stale ones."""
        quotes = self.quotes
        ctx = self.ctx
        tolerance = self.quote_params.refresh_tolerance_bps
        venue_books = self.venue_books
        instruments = self.instruments
        wanted = set()
        to_cancel = []
        inner: dict[tuple[str, Side, int], int] = {}  # the price of the level just inside each slot
        for q in desired:
            key = (q.venue, q.side, q.level)
            wanted.add(key)
            price = q.price
            tick = instruments[q.venue].tick_size
            # keep a post-only quote off the venue's own opposite best (it would be rejected there),
            # and each deeper level a tick beyond the one before it
            if q.side is Side.BUY:
                best = venue_books[q.venue].ask
                if best is not None and price >= best[0]:
                    price = best[0] - tick
                previous = inner.get(key)
                if previous is not None and price >= previous:
                    price = previous - tick
            else:
                best = venue_books[q.venue].bid
                if best is not None and price <= best[0]:
                    price = best[0] + tick
                previous = inner.get(key)
                if previous is not None and price <= previous:
                    price = previous + tick
            inner[(q.venue, q.side, q.level + 1)] = price
            current = quotes.get(key)
            if current is not None:
                if current.cancel_requested_ns:
                    continue  # replacement waits for the cancel to land (keeps exposure honest)
                if needs_refresh(current.price or 0, current.qty - current.filled_qty, price, q.qty, tolerance):
                    to_cancel.append(current)
                continue
            order = ctx.submit_order(
                q.venue, self.symbol, q.side, q.qty, price, post_only=True, tag=_TAGS[q.side, q.level],
            )
            if order is not None:
                quotes[key] = order
                self.slot_of[order.client_order_id] = key
        for order in to_cancel:
            ctx.cancel_order(order)
        for key, order in list(quotes.items()):
            if key not in wanted and not order.cancel_requested_ns:
                ctx.cancel_order(order)

    def _pull_inactive(self) -> None:
        for (venue, _side, _level), order in list(self.quotes.items()):
            if not self.book.is_active(venue) and not order.cancel_requested_ns:
                self.ctx.cancel_order(order)

    def on_order_update(self, order: Order) -> None:
        if order.status.is_done:  # a slot came free (an acknowledgement changes no quote)
            self._dirty = True
            self._forget(order)

    def on_fill(self, fill: Fill, order: Order) -> None:
        self._dirty = True
        if order.status.is_done:
            self._forget(order)

    def _forget(self, order: Order) -> None:
        key = self.slot_of.pop(order.client_order_id, None)
        if key is not None and self.quotes.get(key) is order:
            del self.quotes[key]

    def on_timer(self, now_ns: int) -> None:
        # a venue that went stale or invalid without a book event of its own still loses its quotes
        self._dirty = True
        self._pull_inactive()
        if self.hedger is not None:
            self.hedger.maybe_hedge(now_ns)

    def status_line(self) -> str:
        vol = self.volatility.sigma_bps if hasattr(self, "volatility") else 0.0
        text = f"mm: fair {numbers.to_float(self.fair):,.2f} vol {vol:.2f} bp/sqrt(s) quotes {len(self.quotes)}"
        hedger = getattr(self, "hedger", None)
        return f"{text} | {hedger.status_line()}" if hedger is not None else text
