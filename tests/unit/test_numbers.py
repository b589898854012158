from decimal import Decimal

import pytest

from hft import numbers as n
from hft.model import Instrument, Side


@pytest.mark.parametrize(
    "text,value",
    [("61837.60000000", 61_837_600_000_000), ("0.1", 100_000_000), ("-1.5", -1_500_000_000), ("2e-3", 2_000_000),
     ("1", 1_000_000_000), ("0.000000001", 1), (".5", 500_000_000), ("0.00000000", 0)],
)
def test_parse_exact(text, value):
    assert n.parse(text) == value


def test_parse_never_goes_through_float():
    # 0.1 + 0.2 is not 0.3 in float; in fixed point it is
    assert n.parse("0.1") + n.parse("0.2") == n.parse("0.3")
    assert n.parse("123456789.123456789") == 123456789123456789


@pytest.mark.parametrize("bad", ["abc", "1.2.3", "", "1.0000000001", "nan", "inf"])
def test_parse_rejects_garbage_and_excess_precision(bad):
    with pytest.raises(ValueError):
        n.parse(bad)


def test_round_trip_strings():
    for s in ["0", "1", "0.5", "-2.25", "61837.6", "0.000000001"]:
        assert n.to_str(n.parse(s)) == s
    assert n.to_decimal(n.parse("1.25")) == Decimal("1.25")


def test_mul_and_fee_rounding():
    price, qty = n.parse("60000.01"), n.parse("0.00003")
    assert n.mul(price, qty) == n.parse("1.8000003")
    assert n.fee(n.parse("100"), 1000) == n.parse("0.1")  # 10 bp
    assert n.fee(7, 1000) == 1  # a fraction of a unit rounds up in the venue's favour
    assert n.fee(7, -1000) == 0  # a rebate rounds down


def test_passive_rounding():
    tick = n.parse("0.5")
    assert n.round_passive(n.parse("100.3"), tick, True) == n.parse("100")
    assert n.round_passive(n.parse("100.3"), tick, False) == n.parse("100.5")
    assert n.round_passive(n.parse("100.5"), tick, False) == n.parse("100.5")
    inst = Instrument("v", "BTC/USDT", "BTC", "USDT", tick_size=tick, lot_size=n.parse("0.001"), min_notional=n.parse("5"))
    assert inst.round_price(n.parse("100.3"), Side.SELL) == n.parse("100.5")
    assert inst.round_qty(n.parse("0.0019")) == n.parse("0.001")
    assert inst.check_order(n.parse("100.3"), n.parse("1")) is not None
    assert inst.check_order(n.parse("100.5"), n.parse("0.0015")) is not None
    assert inst.check_order(n.parse("100.5"), n.parse("0.01")) == "notional below minimum 5"
    assert inst.check_order(n.parse("100.5"), n.parse("0.1")) is None
