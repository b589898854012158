"""The nanosecond histogram the hot path fills, read back through a real registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from hft.metrics import NsHistogram


def test_ns_histogram_exports_what_prometheus_clients_own_histogram_would():
    registry = CollectorRegistry()
    ours = NsHistogram("t_ours_seconds", "ours", (5e-6, 20e-6, 1e-3))
    registry.register(ours)
    reference = Histogram("t_ref_seconds", "reference", buckets=(5e-6, 20e-6, 1e-3), registry=registry)
    for ns in (1, 5_000, 5_001, 20_000, 999_999, 1_000_000, 2_000_000_000):  # on and next to every bound
        ours.observe_ns(ns)
        reference.observe(ns / 1e9)

    def sample(name: str, le: str | None = None) -> float | None:
        return registry.get_sample_value(name, {"le": le} if le else None)

    for le in ("5e-06", "2e-05", "0.001", "+Inf"):
        assert sample("t_ours_seconds_bucket", le) == sample("t_ref_seconds_bucket", le), le
    assert sample("t_ours_seconds_bucket", "5e-06") == 2  # 1 ns and exactly 5 µs: "less than or equal"
    assert sample("t_ours_seconds_count") == sample("t_ref_seconds_count") == 7
    assert abs(sample("t_ours_seconds_sum") - sample("t_ref_seconds_sum")) < 1e-12
