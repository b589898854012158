"""Client order ids: decided by the engine before an order leaves, recognisable on a venue.

An id is ``<session prefix><n>``: the session prefix ``h`` + 6 base-36 digits of the start
time in tenths of a second + 2 random base-36 digits + ``-`` (journaled with the session, so a
restart recognises its earlier orders), and ``n`` counts the session's orders from 1. Two
processes started in the same tenth of a second still differ (1 in 1,296 chance of a clash).
Adapters use :func:`is_client_order_id` to tell our orders from others on a shared account.
"""

from __future__ import annotations

import os
import re

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
# ``h`` + 8 characters since this format; up to 6 before it (their orders must stay ours after an upgrade)
_CLIENT_ORDER_ID = re.compile(r"h[0-9a-z]{1,8}-[0-9]+")


def _base36(n: int, width: int) -> str:
    out = ""
    for _ in range(width):
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
    return out


def session_prefix(now_s: float, entropy: bytes | None = None) -> str:
    """A new session's client order id prefix, e.g. ``h8wt0b3k2-``."""
    noise = int.from_bytes(entropy if entropy is not None else os.urandom(2), "big")
    return "h" + _base36(int(now_s * 10), 6) + _base36(noise, 2) + "-"


def is_client_order_id(text: str) -> bool:
    """True when ``text`` has the shape of an id an hft engine gave one of its orders."""
    return _CLIENT_ORDER_ID.fullmatch(text) is not None
