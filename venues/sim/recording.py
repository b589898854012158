"""Reader for recorded venue payloads (``../shared/data/binance/*.gz``).

A recording is gzip text, one message per line: ``<receive time, ns since epoch> <raw JSON>``,
exactly as received from the venue (websocket combined-stream messages and REST depth
snapshots interleaved in arrival order). This module only splits and decodes lines; what a
message means is the business of the adapter or test that reads it.

Sample line::

    1723161254036059768 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255308,
    "s":"BTCUSDT","U":50093239203,"u":50093239207,"b":[["55653.87000000","0.00000000"]],"a":[...]}}
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(recv_ns, raw_json_text)`` for every non-empty line of a recording."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            ts, sep, payload = line.partition(" ")
            if not sep or not ts.isdigit():
                raise ValueError(f"{path}:{lineno}: expected '<recv_ns> <json>'")
            yield int(ts), payload


def iter_messages(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(recv_ns, message)`` with the JSON decoded (numbers stay strings as sent)."""
    loads = json.loads
    for ts, payload in iter_lines(path):
        yield ts, loads(payload)


def is_depth_snapshot(msg: dict) -> bool:
    """True for a REST depth snapshot ``{"lastUpdateId": N, "bids": [...], "asks": [...]}``."""
    return "lastUpdateId" in msg


def stream_data(msg: dict, event: str | None = None) -> dict | None:
    """The ``data`` of a combined-stream message, or ``None`` for other messages.

    With ``event`` (``"depthUpdate"``, ``"trade"``, ``"bookTicker"``), only data of that kind
    is returned; Binance's ``bookTicker`` payload has no ``e`` field, so it is recognised by
    the stream name.
    """
    data = msg.get("data")
    if data is None:
        return None
    if event is None:
        return data
    kind = data.get("e")
    if kind is None and msg.get("stream", "").endswith("@bookTicker"):
        kind = "bookTicker"
    return data if kind == event else None
