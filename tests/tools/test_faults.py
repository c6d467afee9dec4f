"""The fault scenarios' counting, written once in tools/faults.py: the busiest sliding minute of quota grants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tools.faults import busiest_minute

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float, locations: int) -> tuple[datetime, int]:
    return T0 + timedelta(seconds=seconds), locations


def test_the_busiest_minute_is_the_most_any_sliding_minute_held() -> None:
    # 0 s and 59 s share a minute (300); 59 s and 100 s share another (250 + 200 = 450); 0 s and 100 s never do.
    assert busiest_minute([at(0, 50), at(59, 250), at(100, 200)]) == 450
    # A grant exactly a minute after another starts a window of its own.
    assert busiest_minute([at(0, 100), at(60, 100)]) == 100


def test_no_grants_is_zero() -> None:
    assert busiest_minute([]) == 0
