from hft import numbers as n
from hft.model import Fill, Liquidity, Side
from hft.portfolio import Portfolio


def fill(venue, side, price, qty, fee="0", tid="1", fee_asset="USDT"):
    return Fill(venue, "BTC/USDT", "c1", tid, side, n.parse(price), n.parse(qty), n.parse(fee), fee_asset,
                Liquidity.MAKER)


def test_round_trip_realises_pnl_and_fees():
    p = Portfolio(["a", "b"])
    p.on_fill(fill("a", Side.BUY, "100", "1", fee="0.1"))
    p.on_fill(fill("b", Side.SELL, "101", "1", fee="0.1"))
    assert p.position() == 0
    assert p.position("a") == n.parse("1") and p.position("b") == n.parse("-1")
    assert p.realized() == n.parse("1")
    assert p.fees() == n.parse("0.2")
    assert p.net_pnl() == n.parse("0.8")


def test_average_cost_and_unrealized():
    p = Portfolio(["a"])
    p.on_fill(fill("a", Side.BUY, "100", "1"))
    p.on_fill(fill("a", Side.BUY, "110", "1"))
    assert p.total.avg_price == n.parse("105")
    p.mark = n.parse("120")
    assert p.unrealized() == n.parse("30")
    p.on_fill(fill("a", Side.SELL, "120", "0.5"))
    assert p.realized() == n.parse("7.5")
    assert p.total.qty == n.parse("1.5")


def test_position_flip_reopens_at_fill_price():
    p = Portfolio(["a"])
    p.on_fill(fill("a", Side.BUY, "100", "1"))
    p.on_fill(fill("a", Side.SELL, "90", "3"))
    assert p.realized() == n.parse("-10")
    assert p.total.qty == n.parse("-2")
    assert p.total.avg_price == n.parse("90")
    p.mark = n.parse("80")
    assert p.unrealized() == n.parse("20")


def test_rebate_counts_as_negative_fee():
    p = Portfolio(["a"])
    p.on_fill(fill("a", Side.BUY, "100", "1", fee="-0.05"))
    assert p.fees() == n.parse("-0.05")
    p.mark = n.parse("100")
    assert p.net_pnl() == n.parse("0.05")


def test_fee_in_the_base_asset_reduces_holdings_not_cash():
    """Binance without BNB: a buy pays its fee in the base asset."""
    p = Portfolio(["a"])
    p.on_fill(fill("a", Side.BUY, "100", "1", fee="0.001", fee_asset="BTC"))
    pos = p.by_venue["a"]
    assert pos.qty == n.parse("1")  # the traded position (risk, P&L)
    assert pos.holdings == n.parse("0.999")  # what the base balance moved by
    assert pos.cash == n.parse("-100")
    assert p.fees() == n.parse("0.1")  # valued at the fill price
    p.mark = n.parse("100")
    assert p.net_pnl() == n.parse("-0.1")


def test_fee_in_a_third_asset_is_kept_apart():
    p = Portfolio(["a"])
    p.on_fill(fill("a", Side.SELL, "100", "1", fee="0.0002", fee_asset="BNB"))
    pos = p.by_venue["a"]
    assert pos.qty == pos.holdings == n.parse("-1") and pos.cash == n.parse("100")
    assert pos.other_fees == {"BNB": n.parse("0.0002")} and p.total.other_fees == {"BNB": n.parse("0.0002")}
    assert p.fees() == 0
