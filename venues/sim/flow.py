"""Synthetic background liquidity for the simulated venues, deterministic for a seed.

One :class:`TruePrice` per symbol is the "fair" price every simulated venue
follows. Each venue's :class:`VenueFlow` keeps a ladder of passive orders
around ``true price × (1 + venue noise)`` in one :class:`MatchingEngine`, where
the noise is an Ornstein–Uhlenbeck offset in bps, so venues disagree a little
and sometimes cross each other. Random limit arrivals, random cancels and
marketable (taker) orders make the book move; the taker orders hit whatever is
best in the book, including the market maker's own quotes, which is how it gets
filled.

Determinism: every random draw comes from the ``random.Random`` handed in, and
events happen at their own (drawn) timestamps, not at the times ``step`` is
called: the same seed and the same engine activity give the same book. The
true price lives on a fixed time grid, so its path does not depend on who asks
when.

The flow acts on the engine only through ``submit``/``cancel`` (plus the
read-only ``resting``/``best_bid``/``best_ask``) from two unlimited accounts:
``params.account`` for the resting ladder and ``params.taker_account`` for the
taker orders (two accounts so self-trade prevention does not stop the
background flow from trading with itself).
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

from hft import numbers
from hft.model import OrderType, Side, TimeInForce

from venues.sim.matching import ExecReport, MatchingEngine

__all__ = ["FlowParams", "TruePrice", "VenueFlow"]

_NS = 1_000_000_000
_NEVER = 1 << 62


@dataclass(slots=True)
class FlowParams:
    """Knobs of one venue's background flow.

    Prices and sizes are fixed-point ints (:mod:`hft.numbers`), sizes in the
    base asset; rates are per second; ``*_bps`` are floats (model maths).
    ``start_price`` and ``volatility_bps`` configure the :class:`TruePrice`
    built from these params.
    """

    start_price: int = 60_000 * numbers.SCALE  # start of the shared true price
    volatility_bps: float = 1.0  # true-price volatility, bps per sqrt(second)
    noise_bps: float = 2.0  # stationary std of this venue's offset from the true price
    noise_half_life_s: float = 5.0  # how fast the offset reverts
    half_spread_bps: float = 1.5  # distance of the innermost flow level from the venue's centre
    level_spacing_bps: float = 1.0
    levels: int = 20  # per side
    level_size: int = numbers.SCALE // 2  # mean size of a flow order (uniform in 0.5x..1.5x): 0.5
    limit_rate_per_s: float = 20.0  # extra passive orders at random levels (denser near the top)
    cancel_rate_per_s: float = 10.0  # random cancels of flow orders
    taker_rate_per_s: float = 2.0  # marketable orders
    taker_size: int = numbers.SCALE // 10  # mean taker size (exponential): 0.1
    taker_slippage_bps: float = 10.0  # taker limit: best opposite price +/- this
    recenter_interval_s: float = 0.25  # re-centre the ladder (cancel stale, refill gaps)
    max_orders_per_side: int = 60  # oldest flow orders beyond this are canceled at re-centring
    account: str = "flow"
    taker_account: str = "flow-taker"


class TruePrice:
    """A random walk on a fixed time grid (``step_ns``) from ``start_ns``, as a float price.

    ``start`` (fixed-point int) and ``volatility_bps`` come from ``params``
    unless given. ``geometric`` (default): log-returns ~ N(-σ²dt/2, σ²dt) with
    σ = ``volatility_bps``/1e4 per sqrt(second); otherwise arithmetic steps of
    ``start × σ√dt × N(0,1)``. The value at ``t`` is the value at the last grid
    point at or before ``t``, so the path depends only on the seed and
    ``start_ns`` (default: the first time asked), never on when it is asked:
    two instances with the same seed and origin, in different venues or
    processes, agree. The last ``keep`` grid values are kept for callers a
    little behind; earlier times get the oldest kept value.
    """

    __slots__ = ("start", "vol", "step_ns", "geometric", "_rng", "_origin", "_vals", "_k0", "_keep")

    def __init__(
        self,
        params: FlowParams | None = None,
        *,
        start: int | None = None,
        volatility_bps: float | None = None,
        seed: int | str | None = 0,
        rng: random.Random | None = None,
        start_ns: int | None = None,
        step_ns: int = 100_000_000,
        geometric: bool = True,
        keep: int = 100_000,
    ):
        params = params or FlowParams()
        start = params.start_price if start is None else start
        vol = params.volatility_bps if volatility_bps is None else volatility_bps
        if start <= 0 or step_ns <= 0 or keep < 1:
            raise ValueError("start, step_ns and keep must be positive")
        self.start = numbers.to_float(start)
        self.vol = vol / 1e4
        self.step_ns = step_ns
        self.geometric = geometric
        self._rng = rng if rng is not None else random.Random(seed)
        self._origin: int | None = start_ns
        self._vals: deque[float] = deque([self.start])  # grid values k0, k0+1, ...
        self._k0 = 0
        self._keep = keep

    def at(self, now_ns: int) -> float:
        """The true price at ``now_ns`` (without ``start_ns``, the first call fixes the grid's origin)."""
        if self._origin is None:
            self._origin = now_ns
        k = (now_ns - self._origin) // self.step_ns
        if k < 0:
            k = 0
        vals = self._vals
        last = self._k0 + len(vals) - 1
        if k > last:
            self._advance(k - last)
            last = k
        i = k - self._k0
        return vals[i] if i >= 0 else vals[0]

    def _advance(self, n: int) -> None:
        vals = self._vals
        gauss = self._rng.gauss
        p = vals[-1]
        sd = self.vol * math.sqrt(self.step_ns / _NS)
        if self.geometric:
            drift = -0.5 * sd * sd
            for _ in range(n):
                p *= math.exp(drift + sd * gauss(0.0, 1.0))
                vals.append(p)
        else:
            a = self.start * sd
            for _ in range(n):
                p = max(p + a * gauss(0.0, 1.0), 1e-9)
                vals.append(p)
        extra = len(vals) - self._keep
        for _ in range(max(extra, 0)):
            vals.popleft()
            self._k0 += 1


class VenueFlow:
    """Background liquidity of one venue on one :class:`MatchingEngine`.

    Call :meth:`seed_book` once (or let the first :meth:`step` do it), then
    :meth:`step` with increasing times. All engine calls carry the simulated
    event time as ``ts_ns``. ``step`` returns the reports its orders caused
    for other accounts (fills of the market maker's quotes, say).
    """

    def __init__(
        self,
        engine: MatchingEngine,
        true_price: TruePrice,
        params: FlowParams | None = None,
        rng: random.Random | None = None,
    ):
        self.engine = engine
        self.true_price = true_price
        self.params = p = params or FlowParams()
        self.rng = rng if rng is not None else random.Random(0)
        inst = engine.instrument
        self._inst = inst
        for acct in (p.account, p.taker_account):
            if acct not in engine.accounts():
                engine.create_account(acct, {}, unlimited=True)
        self.noise_bps = 0.0  # current venue offset from the true price
        self._theta = math.log(2) / p.noise_half_life_s if p.noise_half_life_s > 0 else 0.0
        self._t: int | None = None  # time of the last event processed
        self._noise_t = 0
        self._next = [_NEVER, _NEVER, _NEVER, _NEVER]  # recenter, limit, cancel, taker
        self._cancelable: list[int] = []  # flow order ids known at the last re-centring
        self._cid = 0
        self._flow_accounts = frozenset((p.account, p.taker_account))
        self.stats = {"limit": 0, "cancel": 0, "taker": 0, "recenter": 0, "taker_fills": 0}

    # ------------------------------------------------------------------ public

    @property
    def seeded(self) -> bool:
        return self._t is not None

    def centre(self, now_ns: int) -> float:
        """The venue's current centre price (true price × venue noise), after noise up to ``now_ns``."""
        self._update_noise(now_ns)
        return self.true_price.at(now_ns) * (1.0 + self.noise_bps / 1e4)

    def seed_book(self, now_ns: int) -> None:
        """Draw the venue's initial noise and place the full ladder on both sides."""
        if self._t is not None:
            raise RuntimeError("seed_book called twice")
        p = self.params
        self._t = now_ns
        self._noise_t = now_ns
        self.noise_bps = self.rng.gauss(0.0, 1.0) * p.noise_bps
        self._recenter(now_ns)
        self._next = [
            now_ns + self._interval(1.0 / p.recenter_interval_s if p.recenter_interval_s > 0 else 0.0, fixed=True),
            now_ns + self._interval(p.limit_rate_per_s),
            now_ns + self._interval(p.cancel_rate_per_s),
            now_ns + self._interval(p.taker_rate_per_s),
        ]

    def step(self, now_ns: int) -> list[ExecReport]:
        """Run every flow event due at or before ``now_ns``.

        Returns the reports of other accounts' orders that the flow's orders
        hit, in order (each also reaches the account's ``report_stream``).
        """
        if self._t is None:
            self.seed_book(now_ns)
        p = self.params
        nxt = self._next
        out: list[ExecReport] = []
        while True:
            t = min(nxt)
            if t > now_ns:
                break
            i = nxt.index(t)  # ties: recenter, limit, cancel, taker
            self._t = t
            if i == 0:
                self._recenter(t)
                nxt[0] = t + self._interval(1.0 / p.recenter_interval_s, fixed=True)
            elif i == 1:
                self._limit_arrival(t)
                nxt[1] = t + self._interval(p.limit_rate_per_s)
            elif i == 2:
                self._cancel_arrival(t)
                nxt[2] = t + self._interval(p.cancel_rate_per_s)
            else:
                self._taker_arrival(t, out)
                nxt[3] = t + self._interval(p.taker_rate_per_s)
        return out

    # ------------------------------------------------------------------ events

    def _interval(self, rate: float, fixed: bool = False) -> int:
        if rate <= 0:
            return _NEVER
        if fixed:
            return max(1, int(_NS / rate))
        return max(1, int(self.rng.expovariate(rate) * _NS))

    def _update_noise(self, t: int) -> None:
        dt = (t - self._noise_t) / _NS
        if dt <= 0:
            return
        self._noise_t = t
        sd = self.params.noise_bps
        if self._theta <= 0:
            self.noise_bps += sd * math.sqrt(dt) * self.rng.gauss(0.0, 1.0)
            return
        decay = math.exp(-self._theta * dt)
        self.noise_bps = self.noise_bps * decay + sd * math.sqrt(1.0 - decay * decay) * self.rng.gauss(0.0, 1.0)

    def _level_price(self, centre: float, level: int, side: Side) -> int:
        p = self.params
        d = (p.half_spread_bps + level * p.level_spacing_bps) / 1e4
        raw = centre * (1.0 - d) if side is Side.BUY else centre * (1.0 + d)
        return max(self._inst.round_price(numbers.from_float(raw), side), self._inst.tick_size)

    def _size(self, mean: int, price: int, uniform: bool) -> int:
        inst = self._inst
        r = self.rng
        x = mean * (r.uniform(0.5, 1.5) if uniform else r.expovariate(1.0))
        q = inst.round_qty(int(x))
        floor = max(inst.lot_size, inst.min_qty)
        if inst.min_notional and price > 0:
            need = -(-inst.min_notional * numbers.SCALE // price)
            floor = max(floor, numbers.round_up(need, inst.lot_size))
        return max(q, floor)

    def _place(self, side: Side, price: int, qty: int, t: int) -> None:
        self._cid += 1
        self.engine.submit(
            self.params.account, f"flow{self._cid}", side, qty, price, OrderType.LIMIT, TimeInForce.GTC, True, t
        )

    def _recenter(self, t: int) -> None:
        """Cancel flow orders on the wrong side of (or far from) the centre, trim, refill empty levels."""
        p = self.params
        eng = self.engine
        centre = self.centre(t)
        self.stats["recenter"] += 1
        hs, sp = p.half_spread_bps, p.level_spacing_bps
        far = hs + (p.levels + 2) * sp
        near = hs * 0.5
        occupied = {Side.BUY: set(), Side.SELL: set()}
        kept = {Side.BUY: [], Side.SELL: []}
        for oid, side, price, _rem in eng.resting(p.account):
            px = numbers.to_float(price)
            d = (centre - px if side is Side.BUY else px - centre) / centre * 1e4
            if d < near or d > far:
                eng.cancel(p.account, order_id=oid, ts_ns=t)
                continue
            kept[side].append(oid)
            occupied[side].add(round((d - hs) / sp) if sp > 0 else 0)
        for side in (Side.BUY, Side.SELL):
            ids = kept[side]
            extra = len(ids) - p.max_orders_per_side
            if extra > 0:  # oldest first: ids come oldest first
                for oid in ids[:extra]:
                    eng.cancel(p.account, order_id=oid, ts_ns=t)
                kept[side] = ids[extra:]
            for level in range(p.levels):
                if level not in occupied[side]:
                    price = self._level_price(centre, level, side)
                    self._place(side, price, self._size(p.level_size, price, True), t)
        self._cancelable = kept[Side.BUY] + kept[Side.SELL]

    def _limit_arrival(self, t: int) -> None:
        p = self.params
        r = self.rng
        side = Side.BUY if r.random() < 0.5 else Side.SELL
        level = min(int(r.expovariate(4.0 / max(p.levels, 1))), max(p.levels - 1, 0))
        price = self._level_price(self.centre(t), level, side)
        self._place(side, price, self._size(p.level_size, price, True), t)
        self.stats["limit"] += 1

    def _cancel_arrival(self, t: int) -> None:
        ids = self._cancelable
        if not ids:
            return
        i = self.rng.randrange(len(ids))
        ids[i], ids[-1] = ids[-1], ids[i]
        self.engine.cancel(self.params.account, order_id=ids.pop(), ts_ns=t)
        self.stats["cancel"] += 1

    def _taker_arrival(self, t: int, out: list[ExecReport]) -> None:
        p = self.params
        r = self.rng
        eng = self.engine
        side = Side.BUY if r.random() < 0.5 else Side.SELL
        best = eng.best_ask() if side is Side.BUY else eng.best_bid()
        if best is None:
            return
        slip = p.taker_slippage_bps / 1e4
        raw = best[0] * (1.0 + slip) if side is Side.BUY else best[0] * (1.0 - slip)
        limit = self._inst.round_price(int(raw), side.opposite)  # toward aggressive: asks round up for a buy
        if limit <= 0:
            limit = self._inst.tick_size
        qty = self._size(p.taker_size, limit, False)
        self._cid += 1
        reports = eng.submit(
            p.taker_account, f"take{self._cid}", side, qty, limit, OrderType.LIMIT, TimeInForce.IOC, False, t
        )
        self.stats["taker"] += 1
        flow = self._flow_accounts
        for x in reports:
            if x.account_id not in flow:
                out.append(x)
            elif x.exec_type == "TRADE" and not x.is_maker:
                self.stats["taker_fills"] += 1
