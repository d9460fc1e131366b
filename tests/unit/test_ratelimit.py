from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from support_engine.ratelimit import RateLimiter


def test_a_burst_passes_then_the_rate_holds() -> None:
    limiter = RateLimiter(per_s=2.0, burst=5)
    assert [limiter.allow("d", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("d", 0.4) is False  # 0.8 of a token
    assert limiter.allow("d", 0.5) is True  # one whole token back
    assert limiter.allow("other", 0.5) is True  # buckets are per source


@given(st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=1, max_size=300))
def test_allowed_messages_never_exceed_burst_plus_rate_times_span(times: list[float]) -> None:
    limiter = RateLimiter(per_s=3.0, burst=4)
    times = sorted(times)
    allowed = sum(limiter.allow("d", t) for t in times)
    assert allowed <= 4 + 3.0 * (times[-1] - times[0]) + 1e-9
    assert allowed >= min(len(times), 4)  # a burst of up to four always passes


def test_time_going_backwards_refills_nothing() -> None:
    limiter = RateLimiter(per_s=1.0, burst=1)
    assert limiter.allow("d", 10.0)
    assert not limiter.allow("d", 5.0)  # a late message earns no tokens
    assert limiter.allow("d", 11.0)
