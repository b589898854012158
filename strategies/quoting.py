"""Pure quote maths of the market-making strategy (Avellaneda–Stoikov style).

No I/O, no asyncio, no engine: plain functions and small classes, called on
every book update. Prices and quantities are fixed-point ints (see
:mod:`hft.numbers`); floats appear only inside the model maths and every result
is rounded back to the venue's tick (toward the passive side) and lot.

Units
-----
Avellaneda–Stoikov (2008) is written in absolute price units, so its
parameters ``gamma`` (1/price) and ``k`` (1/price) would change meaning from one
asset to the next. Here the model is run with prices measured in **basis points
of the fair price** (1 bp = fair × 1e-4):

* ``sigma_bps`` – volatility in bp per √second,
* ``gamma``     – risk aversion per bp (``QuoteParams.risk_aversion``),
* ``k``         – decay of the fill intensity per bp of distance from fair,
  λ(δ) = A·exp(−k·δ) (``QuoteParams.arrival_intensity``),
* ``T``         – a constant horizon in seconds (``QuoteParams.horizon_s``),
* ``q``         – inventory in units of the quote size: position / order_size.

Then, in bp of fair::

    skew   = q · γ · σ² · T                 (reservation price r = s − skew)
    spread = γ · σ² · T + (2/γ) · ln(1 + γ/k)   (total, bid to ask)

The A-S formulas are scale-covariant, so this is exactly A-S in price units
with γ_price = γ/bp and k_price = k/bp. With the defaults (γ = 0.1 /bp,
k = 1 /bp, T = 30 s) and σ = 1 bp/√s — BTC/USDT at ~60,000 on a quiet day — the
total spread at zero inventory is 3 + 20·ln 1.1 ≈ 4.9 bp (≈ 29 USDT) and the
skew is 3 bp (≈ 18 USDT) per order_size of inventory. The total spread is
clamped to ``[min_spread_bps, max_spread_bps]`` and the skew to
``max_spread_bps`` (see :func:`model_quote`).

Functions that take ``fair`` and ``sigma`` separately accept any price unit
(fixed-point ints, or plain floats) as long as both use the same one:
:meth:`VolatilityEstimator.sigma_price` returns sigma in the unit of the price
it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hft.model import Instrument, Side
from hft.numbers import SCALE

__all__ = [
    "VolatilityEstimator",
    "QuoteParams",
    "VenueQuoteInput",
    "Quote",
    "reservation_price",
    "optimal_half_spread",
    "model_quote",
    "compute_quotes",
    "needs_refresh",
    "micro_price",
    "mid_price",
]

_BP = 1e-4
_LN2 = math.log(2.0)
_BUY = Side.BUY
_SELL = Side.SELL


# --------------------------------------------------------------------------- volatility


class VolatilityEstimator:
    """Online EWMA estimate of the fair price's volatility.

    Each :meth:`update` after the first contributes the squared log return
    divided by the elapsed time, ``r² / Δt`` (an unbiased estimate of the
    variance per second for a random walk, whatever the sampling interval), with
    a time-based weight ``1 − exp(−Δt · ln2 / halflife_s)``, so irregular book
    updates are weighted by the time they cover. One observation never carries
    more than half the weight (Δt is capped at one half-life), so a single
    return after a long gap cannot replace the whole estimate.

    Updates with zero or negative elapsed time (same or out-of-order
    timestamps) and non-positive prices are ignored; the next valid update then
    measures the return from the last accepted price over the full interval, so
    no variance is lost. ``min_interval_s`` optionally skips updates closer than
    that to the last accepted one, to sample returns at a coarser grid than the
    book's microstructure noise.

    :param halflife_s: half-life of the EWMA weights, in seconds.
    :param initial_bps_per_sqrt_s: the estimate before any data, in bp per √s.
    :param min_interval_s: minimum elapsed time between accepted samples, seconds.
    """

    __slots__ = ("_decay_per_s", "_max_dt", "_min_dt_ns", "_var", "_last_price", "_last_ts", "samples")

    def __init__(self, halflife_s: float, initial_bps_per_sqrt_s: float, min_interval_s: float = 0.0) -> None:
        if not halflife_s > 0:
            raise ValueError("halflife_s must be positive")
        if not initial_bps_per_sqrt_s >= 0:
            raise ValueError("initial_bps_per_sqrt_s must be non-negative")
        if not min_interval_s >= 0:
            raise ValueError("min_interval_s must be non-negative")
        self._decay_per_s = _LN2 / halflife_s
        self._max_dt = float(halflife_s)
        self._min_dt_ns = max(1, int(min_interval_s * 1e9))
        self._var = (initial_bps_per_sqrt_s * _BP) ** 2  # relative variance per second
        self._last_price = 0
        self._last_ts = 0
        self.samples = 0  #: returns folded into the estimate so far

    def update(self, price: int, ts_ns: int) -> None:
        """Fold in a new fair price observed at ``ts_ns`` (nanoseconds, any monotonic epoch)."""
        if price <= 0:
            return
        last = self._last_price
        if last <= 0:
            self._last_price = price
            self._last_ts = ts_ns
            return
        dt_ns = ts_ns - self._last_ts
        if dt_ns < self._min_dt_ns:
            return
        dt = dt_ns * 1e-9
        r = math.log(price / last)
        w = -math.expm1(-min(dt, self._max_dt) * self._decay_per_s)
        self._var += w * (r * r / dt - self._var)
        self._last_price = price
        self._last_ts = ts_ns
        self.samples += 1

    @property
    def variance_per_s(self) -> float:
        """Relative variance per second (squared log-return per second)."""
        return self._var

    @property
    def sigma_bps(self) -> float:
        """Volatility in basis points per √second (for metrics and logs)."""
        return math.sqrt(self._var) / _BP

    def sigma_price(self, price: int | float) -> float:
        """Volatility in price units per √second at ``price``, in the unit of ``price``.

        Give it the fixed-point fair price and pass the result to
        :func:`compute_quotes` as ``sigma``.
        """
        return math.sqrt(self._var) * price


# --------------------------------------------------------------------------- parameters and types


@dataclass(slots=True)
class QuoteParams:
    """Parameters of the quoting model.

    :ivar order_size: fixed-point base quantity quoted per level (``numbers.parse("0.01")``
        is 0.01 BTC). It is also the inventory unit: the model's ``q`` is
        ``position_total / order_size``, which keeps ``risk_aversion`` free of
        the asset's units.
    :ivar levels: number of price levels quoted per side and venue (≥ 1).
    :ivar level_spacing_bps: extra distance between consecutive levels, in bp of
        fair; levels are additionally kept at least one tick apart.
    :ivar risk_aversion: A-S γ, per bp of fair. Sets the inventory skew
        (q·γ·σ²·T bp) and the inventory part of the spread (γ·σ²·T bp).
    :ivar arrival_intensity: A-S k, per bp: fill intensity decays as exp(−k·δ)
        with the distance δ (bp) from fair. Smaller k (thinner flow) widens the
        spread term (2/γ)·ln(1 + γ/k).
    :ivar horizon_s: the A-S T − t, held constant (seconds): how long inventory
        is expected to be carried.
    :ivar min_spread_bps: floor of the total (bid-to-ask) model spread, bp of fair.
    :ivar max_spread_bps: cap of the total model spread, and of the inventory
        skew ``|r − fair|``, in bp of fair.
    :ivar refresh_tolerance_bps: a resting quote is not replaced while the desired
        price is within this many bp of it (see :func:`needs_refresh`).

    Defaults give a total spread of ≈ 4.9 bp and a skew of 3 bp per order_size
    of inventory at σ = 1 bp/√s.
    """

    order_size: int
    levels: int = 2
    level_spacing_bps: float = 2.0
    risk_aversion: float = 0.1
    arrival_intensity: float = 1.0
    horizon_s: float = 30.0
    min_spread_bps: float = 1.0
    max_spread_bps: float = 50.0
    refresh_tolerance_bps: float = 0.5

    def __post_init__(self) -> None:
        if self.order_size <= 0:
            raise ValueError("order_size must be positive")
        if self.levels < 1:
            raise ValueError("levels must be at least 1")
        if not self.level_spacing_bps >= 0:
            raise ValueError("level_spacing_bps must be non-negative")
        if not (self.risk_aversion > 0 and self.arrival_intensity > 0):
            raise ValueError("risk_aversion and arrival_intensity must be positive")
        if not self.horizon_s >= 0:
            raise ValueError("horizon_s must be non-negative")
        if not 0 <= self.min_spread_bps <= self.max_spread_bps:
            raise ValueError("need 0 <= min_spread_bps <= max_spread_bps")
        if not self.refresh_tolerance_bps >= 0:
            raise ValueError("refresh_tolerance_bps must be non-negative")


@dataclass(slots=True)
class VenueQuoteInput:
    """One venue to quote on: its instrument, our position there and its limit.

    ``position`` and ``max_position`` are fixed-point base quantities; the
    position is signed (long > 0).
    """

    venue: str
    instrument: Instrument
    position: int
    max_position: int


@dataclass(slots=True)
class Quote:
    """A desired resting limit order: price on the venue's tick, qty on its lot."""

    venue: str
    side: Side
    level: int
    price: int
    qty: int


# --------------------------------------------------------------------------- model


def reservation_price(fair: float, q: float, gamma: float, sigma: float, horizon: float) -> float:
    """A-S reservation price ``r = s − q·γ·σ²·T``, with γ per bp of fair.

    :param fair: fair price ``s`` (any price unit, > 0).
    :param q: inventory in order sizes (long > 0 lowers r).
    :param gamma: risk aversion, per bp.
    :param sigma: volatility in the unit of ``fair`` per √second.
    :param horizon: T − t in seconds.
    :returns: r in the unit of ``fair``.
    """
    # q·γ·σ_bps²·T bp, times one bp in price units (fair·1e-4): σ_bps = σ/(fair·1e-4).
    return fair - q * gamma * sigma * sigma * horizon / (fair * _BP)


def optimal_half_spread(fair: float, gamma: float, sigma: float, horizon: float, arrival_intensity: float) -> float:
    """Half of the A-S total spread ``γσ²T + (2/γ)·ln(1 + γ/k)``, unclamped.

    Same units as :func:`reservation_price`; ``arrival_intensity`` is k per bp.
    The first term grows with γ and σ; the second shrinks as γ grows (from 2/k
    at γ → 0), so the total widens with γ whenever σ²T (bp²) outweighs 1/k².

    :returns: half the total spread in the unit of ``fair``.
    """
    bp = fair * _BP
    sigma_bps = sigma / bp
    total_bps = gamma * sigma_bps * sigma_bps * horizon + 2.0 / gamma * math.log1p(gamma / arrival_intensity)
    return 0.5 * total_bps * bp


def model_quote(fair: float, sigma: float, position_total: int, params: QuoteParams) -> tuple[float, float]:
    """The reservation price and the clamped half spread for an inventory.

    ``q = position_total / params.order_size``; the total spread is clamped to
    ``[min_spread_bps, max_spread_bps]`` of fair, and the skew ``|r − fair|`` to
    ``max_spread_bps`` of fair, so that an extreme inventory or volatility still
    leaves the reducing side quoted near the market. Returns ``(r, half_spread)``
    in the unit of ``fair``; level-0 quotes sit at ``r ∓ half_spread`` before
    rounding to the tick.
    """
    if fair <= 0:
        raise ValueError("fair price must be positive")
    if sigma < 0:
        raise ValueError("sigma must be non-negative")
    # reservation_price() and optimal_half_spread(), inlined: this runs on every quote decision
    gamma = params.risk_aversion
    bp = fair * _BP
    sigma_bps = sigma / bp
    inventory_bps = gamma * sigma_bps * sigma_bps * params.horizon_s  # γ·σ²·T
    r = fair - position_total / params.order_size * inventory_bps * bp
    half = 0.5 * (inventory_bps + 2.0 / gamma * math.log1p(gamma / params.arrival_intensity)) * bp
    hi = params.max_spread_bps * bp
    if r < fair - hi:
        r = fair - hi
    elif r > fair + hi:
        r = fair + hi
    lo = 0.5 * params.min_spread_bps * bp
    hi *= 0.5
    if half < lo:
        half = lo
    elif half > hi:
        half = hi
    return r, half


def compute_quotes(
    fair: int,
    sigma: float,
    position_total: int,
    venues: Sequence[VenueQuoteInput],
    params: QuoteParams,
    max_position_total: int,
) -> list[Quote]:
    """Desired quotes on every venue for a fair price, a volatility and the inventory.

    :param fair: fixed-point fair price (e.g. :func:`micro_price` of the consolidated book).
    :param sigma: volatility in fixed-point price units per √second
        (:meth:`VolatilityEstimator.sigma_price` of ``fair``).
    :param position_total: signed fixed-point position summed over venues; it
        drives the skew (q = position_total / order_size) and the total limit.
    :param venues: the venues to quote on, in priority order for the shared total headroom.
    :param params: model parameters.
    :param max_position_total: limit on ``|position_total|`` after any full fill.

    Per venue and level L: bid at ``r − δ/2 − L·spacing`` rounded down to the
    tick, ask at ``r + δ/2 + L·spacing`` rounded up. Level-0 bid and ask never
    cross (if rounding made them touch, the side that adds to inventory is moved
    away by a tick) and each deeper level is at least one tick beyond the
    previous one. Quotes at a non-positive price are dropped.

    Quantities are ``order_size`` truncated to the lot and capped by the
    remaining headroom, cumulatively: a venue's headroom is used up level by
    level, and when the total headroom is short it goes to every venue's level 0
    first (in venue order), then level 1, and so on. If every quote on a side
    were filled, no venue position would pass ``±max_position`` and the total
    would not pass ``±max_position_total``. A level whose capped quantity is
    below the venue's lot or min_qty, or whose notional is below min_notional,
    is dropped; at a limit this leaves only the side that reduces inventory.

    :returns: quotes grouped by venue (input order), then by level, bid before ask.
    """
    r, half = model_quote(fair, sigma, position_total, params)
    spacing = params.level_spacing_bps * fair * _BP
    levels = params.levels
    order_size = params.order_size

    # Pass 1, venue by venue: quantities capped by each venue's own headroom (cumulative over its
    # levels) on the price ladder of its tick (computed once per distinct tick).
    out: list[Quote] = []
    append = out.append
    starts: list[int] = []
    sum_bid = sum_ask = 0
    ladder_tick = 0
    ladder: list[tuple[int, int]] = []
    for v in venues:
        starts.append(len(out))
        name = v.venue
        inst = v.instrument
        tick = inst.tick_size
        if tick != ladder_tick:
            ladder_tick = tick
            ladder = _ladder(r - half, r + half, spacing, levels, tick, position_total > 0)
        lot = inst.lot_size
        min_qty = inst.min_qty if inst.min_qty > lot else lot
        # Compared with price·qty (both scaled); at least 1 so that a price <= 0 never passes.
        min_notional = inst.min_notional * SCALE or 1
        size = (order_size // lot) * lot
        bid_room = v.max_position - v.position
        ask_room = v.max_position + v.position
        level = 0
        for b, a in ladder:
            qty = size if size <= bid_room else (bid_room // lot) * lot
            if qty >= min_qty and b * qty >= min_notional:
                append(Quote(name, _BUY, level, b, qty))
                bid_room -= qty
                sum_bid += qty
            qty = size if size <= ask_room else (ask_room // lot) * lot
            if qty >= min_qty and a * qty >= min_notional:
                append(Quote(name, _SELL, level, a, qty))
                ask_room -= qty
                sum_ask += qty
            level += 1

    total_bid_room = max_position_total - position_total
    total_ask_room = max_position_total + position_total
    if sum_bid <= total_bid_room and sum_ask <= total_ask_room:
        return out
    return _cap_total(out, starts, venues, total_bid_room, total_ask_room)


def _ladder(
    bid_f: float, ask_f: float, spacing: float, levels: int, tick: int, long_inventory: bool
) -> list[tuple[int, int]]:
    """``[(bid, ask), ...]`` per level on ``tick`` (the price rules of :func:`compute_quotes`)."""
    # Same arithmetic as Instrument.round_price (bids down, asks up).
    b = (math.floor(bid_f) // tick) * tick
    a = -((-math.ceil(ask_f)) // tick) * tick
    if b >= a:  # only reachable through float rounding; move the inventory-adding side
        if long_inventory:
            b = a - tick
        else:
            a = b + tick
    out = [(b, a)]
    for level in range(1, levels):
        off = level * spacing
        nb = (math.floor(bid_f - off) // tick) * tick
        na = -((-math.ceil(ask_f + off)) // tick) * tick
        b = nb if nb < b else b - tick
        a = na if na > a else a + tick
        out.append((b, a))
    return out


def _cap_total(
    quotes: list[Quote], starts: list[int], venues: Sequence[VenueQuoteInput], bid_room: int, ask_room: int
) -> list[Quote]:
    """Trim quotes so that full fills keep the total position within its limit.

    Headroom goes level by level (every venue's level 0 first, in venue order),
    so inner levels, the likelier to fill, are kept. Quantities only shrink,
    so the per-venue caps of pass 1 still hold.
    """
    starts = starts + [len(quotes)]
    rules = []
    for i, v in enumerate(venues):
        inst = v.instrument
        lot = inst.lot_size
        rule = (lot, inst.min_qty if inst.min_qty > lot else lot, inst.min_notional * SCALE or 1)
        rules.extend([rule] * (starts[i + 1] - starts[i]))
    keep = [True] * len(quotes)
    for j in sorted(range(len(quotes)), key=lambda j: quotes[j].level):  # stable: venue order kept
        quote = quotes[j]
        lot, min_qty, min_notional = rules[j]
        room = bid_room if quote.side is _BUY else ask_room
        if quote.qty > room:
            qty = (room // lot) * lot
            if qty < min_qty or quote.price * qty < min_notional:
                keep[j] = False
                continue
            quote.qty = qty
        if quote.side is _BUY:
            bid_room -= quote.qty
        else:
            ask_room -= quote.qty
    return [quote for quote, kept in zip(quotes, keep) if kept]


# --------------------------------------------------------------------------- helpers


def needs_refresh(
    current_price: int, current_qty: int, desired_price: int, desired_qty: int, tolerance_bps: float
) -> bool:
    """Whether a resting quote should be cancelled and replaced by the desired one.

    True if the quantity differs, or if the desired price is more than
    ``tolerance_bps`` (bp of the current price) away from the resting one;
    False for moves within the tolerance, which saves a cancel/replace round
    trip (and the queue position) for small fair-price wiggles.
    """
    if current_qty != desired_qty:
        return True
    diff = desired_price - current_price
    if diff < 0:
        diff = -diff
    return diff * 10_000 > tolerance_bps * current_price


def micro_price(bid_px: int, bid_sz: int, ask_px: int, ask_sz: int) -> int:
    """Size-weighted mid ``(bid·ask_sz + ask·bid_sz) / (bid_sz + ask_sz)``, fixed point.

    Leans toward the side with less size (the side more likely to be taken
    out next): a heavy bid pulls the fair price toward the ask. Falls back to
    :func:`mid_price` when both sizes are zero. Truncated to the fixed-point
    unit (not to a tick); always within ``[bid_px, ask_px]``.
    """
    total = bid_sz + ask_sz
    if total <= 0:
        return (bid_px + ask_px) // 2
    return (bid_px * ask_sz + ask_px * bid_sz) // total


def mid_price(bid_px: int, ask_px: int) -> int:
    """Midpoint of the best bid and ask, truncated to the fixed-point unit."""
    return (bid_px + ask_px) // 2
