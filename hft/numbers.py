"""Fixed-point numbers for prices, sizes and money.

Every price, quantity and amount inside the framework is a Python ``int``
holding the value times :data:`SCALE`. Venue strings are parsed digit by digit
(never through ``float``), so ``"0.1"`` is exactly ``100_000_000``, and sums of
sizes never drift. ``Decimal`` appears only at the edges (YAML, reports) and
``float`` only in metrics and model maths whose result is rounded back to a
venue's tick or lot with the explicit helpers below.

Fee rates are ints in parts per million (``PPM``): 0.1 % is ``1000``.
"""

from __future__ import annotations

from decimal import Decimal

SCALE_DIGITS = 9
SCALE = 10**SCALE_DIGITS
PPM = 1_000_000

_ZERO_PAD = "0" * SCALE_DIGITS


def parse(text: str | int | Decimal) -> int:
    """Parse a decimal string (``"61837.60000000"``, ``"-1.5"``, ``"2e-3"``) to fixed point.

    Raises ``ValueError`` for text that is not a number or that has non-zero
    digits beyond the scale, rather than rounding silently.
    """
    if isinstance(text, int):
        return text * SCALE
    if isinstance(text, Decimal):
        return _parse_decimal(text)
    s = text.strip()
    if "e" in s or "E" in s:
        return _parse_decimal(Decimal(s))
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:]
    whole, dot, frac = s.partition(".")
    if not (whole.isdigit() or (whole == "" and frac)) or (dot and frac and not frac.isdigit()):
        raise ValueError(f"not a decimal number: {text!r}")
    if len(frac) > SCALE_DIGITS:
        if frac[SCALE_DIGITS:].strip("0"):
            raise ValueError(f"{text!r} has more than {SCALE_DIGITS} decimal places")
        frac = frac[:SCALE_DIGITS]
    value = int(whole or "0") * SCALE + (int(frac + _ZERO_PAD[len(frac):]) if frac else 0)
    return -value if neg else value


def _parse_decimal(d: Decimal) -> int:
    if not d.is_finite():
        raise ValueError(f"not a finite number: {d}")
    scaled = d.scaleb(SCALE_DIGITS)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{d} has more than {SCALE_DIGITS} decimal places")
    return int(scaled)


def to_decimal(value: int) -> Decimal:
    """Fixed point to an exact ``Decimal`` (for reports and the wire)."""
    return Decimal(value).scaleb(-SCALE_DIGITS).normalize() if value else Decimal(0)


def to_str(value: int) -> str:
    """Fixed point to a plain decimal string without exponent: ``1_500_000_000`` → ``"1.5"``."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), SCALE)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{SCALE_DIGITS}d}".rstrip("0")


def to_float(value: int) -> float:
    """Fixed point to float, for metrics and model maths only."""
    return value / SCALE


def from_float(value: float) -> int:
    """Float to fixed point (nearest unit); round to a tick or lot afterwards."""
    return round(value * SCALE)


def mul(a: int, b: int) -> int:
    """Product of two fixed-point numbers (price × quantity = notional), truncated toward zero."""
    p = a * b
    return p // SCALE if p >= 0 else -((-p) // SCALE)


def fee(notional: int, rate_ppm: int) -> int:
    """Fee on a notional at a ppm rate, rounded up in the venue's favour (a rebate rounds down)."""
    return -((-notional * rate_ppm) // PPM)


def round_down(value: int, step: int) -> int:
    """Largest multiple of ``step`` not above ``value`` (bid prices, quantities)."""
    return (value // step) * step


def round_up(value: int, step: int) -> int:
    """Smallest multiple of ``step`` not below ``value`` (ask prices)."""
    return -((-value) // step) * step


def round_passive(price: int, tick: int, is_buy: bool) -> int:
    """Round a quote price to the tick toward the passive side: bids down, asks up."""
    return (price // tick) * tick if is_buy else -((-price) // tick) * tick
