"""ccxt exceptions → the framework's error tree, and what a caller may do after each.

Two questions are asked of every ccxt exception at the adapter boundary:

* :func:`outcome`: did the venue execute the request? ``REFUSED`` (a 429/418, "too many
  orders", a timestamp outside ``recvWindow``: the venue said no before doing anything, so
  sending the *same* request again later is safe, even an order with the same client id),
  ``UNKNOWN`` (a timeout, a 5xx, a dropped connection: it may have been executed — an order is
  resolved by its client order id, never resent), or ``PERMANENT`` (authentication, invalid
  order, insufficient funds, not found…: retrying will not help).
* :func:`to_hft_error`: the :mod:`hft.errors` exception to raise, chained ``from`` the ccxt one.

Messages pass through :func:`clean_message`: registered secrets are masked
(:func:`hft.secrets.redact`) and so are request signatures, which ccxt puts in the URLs its
network errors quote.

ccxt's tree, for reference (ccxt 4.5): ``NetworkError`` ⊃ ``DDoSProtection`` (HTTP 429/418),
``RateLimitExceeded``, ``ExchangeNotAvailable`` (5xx, connection refused), ``InvalidNonce``
(⊃ ``ChecksumError``), ``RequestTimeout``; ``ExchangeError`` ⊃ ``AuthenticationError``,
``BadRequest`` ⊃ ``BadSymbol``, ``InsufficientFunds``, ``InvalidOrder`` ⊃ ``OrderNotFound``,
``OrderImmediatelyFillable``…, ``OperationRejected`` ⊃ ``MarketClosed``.
"""

from __future__ import annotations

import json
import re
from enum import Enum

import ccxt

from hft.errors import AuthenticationError, HftError, OrderNotFound, VenuePermanentError, VenueTransientError
from hft.secrets import redact

__all__ = ["Outcome", "clean_message", "is_rate_limit", "outcome", "reject_reason", "to_hft_error"]

_SIGNATURE = re.compile(r"(signature=)[0-9A-Za-z%+/=_-]+", re.IGNORECASE)
_MAX_LEN = 300
_EXCHANGE_IDS = frozenset(ccxt.exchanges)


class Outcome(str, Enum):
    REFUSED = "refused"  # not executed; the same request may be sent again later
    UNKNOWN = "unknown"  # may have been executed; resolve by querying, never resend blindly
    PERMANENT = "permanent"  # the venue's final answer


def outcome(exc: BaseException) -> Outcome:
    """What a failed request tells about its execution (see the module docstring)."""
    if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
        return Outcome.REFUSED
    if isinstance(exc, ccxt.InvalidNonce) and not isinstance(exc, ccxt.ChecksumError):
        return Outcome.REFUSED  # timestamp outside recvWindow: checked before anything else
    if isinstance(exc, (ccxt.NetworkError, ccxt.OperationFailed)):
        return Outcome.UNKNOWN
    if isinstance(exc, (ccxt.ExchangeError, ccxt.BaseError)):
        return Outcome.PERMANENT
    if isinstance(exc, (OSError, TimeoutError)):
        return Outcome.UNKNOWN
    return Outcome.PERMANENT


def is_rate_limit(exc: BaseException) -> bool:
    return isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded))


def clean_message(exc: BaseException | str) -> str:
    """One line, secrets and signatures masked, ccxt's ``<exchange> {json}`` reduced to its ``msg``."""
    text = exc if isinstance(exc, str) else str(exc)
    text = _SIGNATURE.sub(r"\1***", redact(text))
    m = re.search(r"\{.*\}", text)
    if m is not None:
        try:
            body = json.loads(m.group(0))
        except ValueError:
            body = None
        if isinstance(body, dict) and "msg" in body:
            code = body.get("code")
            text = f"{body['msg']}" + (f" ({code})" if code is not None else "")
    text = " ".join(text.split())
    first, _, rest = text.partition(" ")
    if rest and first in _EXCHANGE_IDS:  # ccxt starts its messages with the exchange id
        text = rest
    return text if len(text) <= _MAX_LEN else text[: _MAX_LEN - 1] + "…"


def reject_reason(exc: BaseException) -> str:
    """The ``reason`` of an ``OrderRejected`` for a permanent error: class and venue message."""
    return f"{type(exc).__name__}: {clean_message(exc)}"


def to_hft_error(exc: BaseException, venue: str, action: str) -> HftError:
    """The :mod:`hft.errors` exception for ``exc``; raise it ``from exc``."""
    what = f"venue {venue}: {action} failed: {type(exc).__name__}: {clean_message(exc)}"
    if isinstance(exc, ccxt.AuthenticationError):
        return AuthenticationError(
            f"venue {venue}: authentication failed (check api_key/api_secret): {clean_message(exc)}"
        )
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFound(what)
    if outcome(exc) is Outcome.PERMANENT:
        return VenuePermanentError(what)
    return VenueTransientError(what)
