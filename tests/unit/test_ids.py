"""Client order ids: our shape is recognised, others' are not."""

from __future__ import annotations

from hft import ids


def test_session_prefixes_differ_within_the_same_tenth_of_a_second_and_ids_are_recognised():
    a = ids.session_prefix(1_795_300_000.0, entropy=b"\x00\x01")
    b = ids.session_prefix(1_795_300_000.0, entropy=b"\x00\x02")
    assert a != b and len(a) == len(b) == 10 and a.startswith("h") and a.endswith("-")
    assert ids.is_client_order_id(a + "1") and ids.is_client_order_id(b + "123456")
    assert ids.is_client_order_id("h8wt0b3-17")  # an id of the format before (6 digits): still ours


def test_others_ids_are_not_ours():
    for text in ("web_123", "x-R4BD3S82abc", "and_42", "", "h-1", "H8wt0b3k2-1", "h8wt0b3k2-", "h8wt0b3k2-1x",
                 "hh8wt0b3k2a-1"):
        assert not ids.is_client_order_id(text), text
