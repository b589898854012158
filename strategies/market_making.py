"""Multi-venue market making around a consolidated fair price.

On every book change the strategy takes the fair price (micro-price or mid of
the consolidated book), updates its volatility estimate, asks
:func:`strategies.quoting.compute_quotes` for the desired ladder on every
venue whose book is valid (inventory-skewed, Avellaneda–Stoikov style, within
position limits), and reconciles it with what rests: a quote within the
refresh tolerance stays (no cancel/replace for small moves), others are
cancelled and replaced. A venue whose book is invalid or stale gets no quotes
and its resting ones are pulled. A quote the pre-trade checks deny (order rate,
balance, ...) leaves its slot empty for ``denial_hold_s`` before it is asked
for again, instead of on every top-of-book change.
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
    denial_hold_s: float = Field(
        0.25, ge=0, description="After the pre-trade checks deny a quote, leave its slot empty this long, seconds "
        "(0: ask again on the next book change)",
    )
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
        self._seen_bid: tuple | None = None
        self._seen_ask: tuple | None = None
        self._seen_venue_top: dict[str, tuple] = {}
        self._held: dict[tuple[str, Side, int], int] = {}  # slot -> mono ns until which a denied slot waits
        self._denial_hold_ns = int(p.denial_hold_s * 1e9)
        self._dirty = True
        self.hedger = InventoryHedger(self.ctx, self.symbol, p.hedge) if p.hedge is not None else None

    def on_book(self, venue: str, symbol: str) -> None:
        book = self.book
        bid = book.bid
        ask = book.ask
        vb = self.venue_books.get(venue)
        venue_top = vb.top_prices() if vb is not None else None
        if (
            not self._dirty and bid == self._seen_bid and ask == self._seen_ask
            and venue_top == self._seen_venue_top.get(venue)
        ):
            return  # a change below the tops the decision reads: nothing to re-quote
        self._dirty = False
        self._seen_bid = bid
        self._seen_ask = ask
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
        active = book.active_venues()
        inputs = []
        for venue_input, position in self._inputs:
            if venue_input.venue in active:
                venue_input.position = position.qty
                inputs.append(venue_input)
        desired = compute_quotes(
            fair, self.volatility.sigma_price(fair), self.portfolio.total.qty, inputs, self.quote_params,
            self.max_total,
        )
        self._reconcile(desired, now)
        if self.hedger is not None:
            self.hedger.maybe_hedge(now)

    def _reconcile(self, desired: list, now: int) -> None:
        """Send the quotes of free slots first (the latency that matters), then cancel stale ones.

        Quotes arrive grouped by venue, then by level, bid before ask (``compute_quotes``), so each
        venue's top of book is read once and a level's inner neighbour is the side's previous quote.
        """
        quotes = self.quotes
        ctx = self.ctx
        held = self._held
        venue_books = self.venue_books
        instruments = self.instruments
        wanted = set()
        occupied = []  # (resting order, target price, target qty): refresh checks after the sends
        venue = None
        best_bid = best_ask = inner_bid = inner_ask = None
        tick = 0
        inner_bid_level = inner_ask_level = -2  # the level of the side's previous quote on this venue
        for q in desired:
            if q.venue != venue:
                venue = q.venue
                best_bid, best_ask = venue_books[venue].top_prices()
                tick = instruments[venue].tick_size
                inner_bid_level = inner_ask_level = -2
            side = q.side
            level = q.level
            key = (venue, side, level)
            wanted.add(key)
            price = q.price
            # keep a post-only quote off the venue's own opposite best (it would be rejected there),
            # and each deeper level a tick beyond the one before it
            if side is Side.BUY:
                if best_ask is not None and price >= best_ask:
                    price = best_ask - tick
                if inner_bid_level == level - 1 and price >= inner_bid:
                    price = inner_bid - tick
                inner_bid = price
                inner_bid_level = level
            else:
                if best_bid is not None and price <= best_bid:
                    price = best_bid + tick
                if inner_ask_level == level - 1 and price <= inner_ask:
                    price = inner_ask + tick
                inner_ask = price
                inner_ask_level = level
            current = quotes.get(key)
            if current is not None:
                # a slot whose cancel is out waits for it to land before its replacement (keeps exposure honest)
                if not current.cancel_requested_ns:
                    occupied.append((current, price, q.qty))
                continue
            if held and held.get(key, 0) > now:
                continue  # denied a moment ago: wait out the hold instead of asking again on every tick
            order = ctx.submit_order(venue, self.symbol, side, q.qty, price, post_only=True, tag=_TAGS[side, level])
            if order is None:
                held[key] = now + self._denial_hold_ns
            else:
                quotes[key] = order
                self.slot_of[order.client_order_id] = key
        tolerance = self.quote_params.refresh_tolerance_bps
        for current, price, qty in occupied:
            if needs_refresh(current.price or 0, current.qty - current.filled_qty, price, qty, tolerance):
                ctx.cancel_order(current)
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
