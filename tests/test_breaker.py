"""Circuit breaker per provider: opens at the error share over the window, fails fast, probes, closes;
in Redis (shared by every worker) and in process, by the same rules."""

from __future__ import annotations

import asyncio

import pytest

from chief.core.breaker import BreakerPolicy, CircuitBreaker
from chief.core.bus.keys import Keys
from chief.core.bus.redis import connect
from chief.core.errors import CircuitOpen

pytest_plugins = ["tests.test_redis_support"]  # Redis fixtures: prefix, private server, workers

POLICY = BreakerPolicy(window_s=30, threshold=0.5, min_calls=4, open_s=0.3)


@pytest.fixture(params=["local", "redis"])
async def breakers(request):
    """Two breakers that share their circuits when on Redis (two workers), or one local breaker twice."""
    if request.param == "local":
        one = CircuitBreaker(POLICY)
        yield one, one
        return
    url, prefix = request.getfixturevalue("shared_redis_url"), request.getfixturevalue("redis_prefix")
    clients = [connect(url, max_connections=4), connect(url, max_connections=4)]
    try:
        yield tuple(CircuitBreaker(POLICY, redis=c, keys=Keys(prefix)) for c in clients)
    finally:
        for c in clients:
            await c.aclose(close_connection_pool=True)


async def test_breaker_stays_closed_below_the_error_share_and_the_minimum_of_calls(breakers):
    a, _ = breakers
    for ok in (False, False, True):  # 2 errors of 3 calls: under min_calls
        await a.record("p", ok)
    await a.before_call("p")
    assert await a.record("p", True) == "closed"  # 2 of 4 errors, but the last call succeeded
    assert await a.state("p") == "closed"


async def test_breaker_opens_at_half_errors_and_every_worker_fails_fast(breakers):
    a, b = breakers
    states = [await a.record("p", ok) for ok in (True, False, True, False)]
    assert states[-1] == "open"
    with pytest.raises(CircuitOpen, match="provider 'p' is failing: its circuit breaker is open"):
        await b.before_call("p")  # the other worker sees the same circuit
    await a.before_call("other-provider")  # circuits are per provider


async def test_breaker_half_opens_for_one_probe_then_closes_on_success(breakers):
    a, b = breakers
    for ok in (False, False, False, False):
        await a.record("p", ok)
    await asyncio.sleep(0.35)  # the open period (0.3 s) passes
    await a.before_call("p")  # the probe goes through
    with pytest.raises(CircuitOpen):
        await b.before_call("p")  # only one probe at a time
    assert await a.record("p", True) == "closed"
    await b.before_call("p")
    assert await b.state("p") == "closed"


async def test_breaker_reopens_when_the_probe_fails(breakers):
    a, _ = breakers
    for _ in range(4):
        await a.record("p", False)
    await asyncio.sleep(0.35)
    await a.before_call("p")
    assert await a.record("p", False) == "open"
    with pytest.raises(CircuitOpen):
        await a.before_call("p")
