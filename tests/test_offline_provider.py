"""The offline provider: deterministic, labelled, summarises diffs, simulates latency and failures."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from chief.core.agents import Provider
from chief.core.errors import ProviderError
from chief.plugins.offline import LABEL, OfflineProvider, diff_summary

DIFF = """\
Review this change please.
diff --git a/src/app.py b/src/app.py
index 1111111..2222222 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,4 +1,5 @@
 import os
--- a removed line that looks like a header
+import subprocess
+subprocess.run(cmd, shell=True)
 def main():
     pass
diff --git a/docs/new.md b/docs/new.md
new file mode 100644
--- /dev/null
+++ b/docs/new.md
@@ -0,0 +1,2 @@
+# New
+text
diff --git a/old.txt b/old.txt
deleted file mode 100644
--- a/old.txt
+++ /dev/null
@@ -1 +0,0 @@
-gone
"""


def _messages(prompt: str, system: str = "You are the security reviewer of a software team. Audit.") -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


@pytest.fixture
def no_offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CHIEF_OFFLINE_LATENCY_MS", "CHIEF_OFFLINE_FAILURE_RATE", "CHIEF_OFFLINE_SEED"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Records every `asyncio.sleep` instead of sleeping."""
    recorded: list[float] = []

    async def fake_sleep(delay: float, result: Any = None) -> Any:
        recorded.append(delay)
        return result

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return recorded


async def test_offline_provider_is_deterministic_and_labelled(no_offline_env: None) -> None:
    provider = OfflineProvider()
    assert isinstance(provider, Provider)
    prompt = "\n\nSummarise the quarterly report.\nFocus on costs.\n"
    first = await provider.complete(_messages(prompt))
    second = await OfflineProvider().complete(_messages(prompt))
    assert first == second
    lines = first.text.splitlines()
    assert lines[0] == LABEL
    assert "Agent: the security reviewer of a software team" in lines
    assert "> Summarise the quarterly report." in lines and "> Focus on costs." in lines
    assert "Task: 7 words, 5 lines" in first.text
    assert first.model == "offline-1" and first.tokens_estimated
    assert first.tokens_in and first.tokens_out
    assert (await provider.complete(_messages(prompt), model="offline-2")).model == "offline-2"


async def test_offline_provider_truncates_long_lines(no_offline_env: None) -> None:
    reply = await OfflineProvider().complete(_messages("x" * 5000))
    quoted = [line for line in reply.text.splitlines() if line.startswith("> ")]
    assert len(quoted) == 1 and len(quoted[0]) < 130 and quoted[0].endswith("…")


async def test_offline_provider_summarises_a_diff(no_offline_env: None) -> None:
    text = (await OfflineProvider().complete(_messages(DIFF))).text
    assert "Changes: 3 file(s), +4 -2" in text
    assert "- src/app.py (+2 -1)" in text
    assert "- docs/new.md (+2 -0, new file)" in text
    assert "- old.txt (+0 -1, deleted)" in text
    assert "> Review this change please." in text
    assert "> diff --git" not in text  # the diff is summarised, not quoted


def test_offline_diff_summary_plain_unified_diff() -> None:
    plain = "--- a.txt\t2024-01-01\n+++ a.txt\t2024-01-02\n@@ -1,2 +1,2 @@\n-a\n+b\n c\n--- b.txt\n+++ b.txt\n@@ -1 +1 @@\n-x\n+y\n"
    assert [(f.path, f.added, f.removed) for f in diff_summary(plain)] == [("a.txt", 1, 1), ("b.txt", 1, 1)]
    assert diff_summary("no diff here\n--- just a rule\n") == []


async def test_offline_provider_latency_awaits_sleep(no_offline_env: None, sleeps: list[float]) -> None:
    await OfflineProvider(latency_ms=250).complete(_messages("hi"))
    assert sleeps == [0.25]


async def test_offline_provider_zero_latency_never_sleeps(no_offline_env: None, sleeps: list[float]) -> None:
    await OfflineProvider().complete(_messages("hi"))
    assert sleeps == []


async def test_offline_provider_options_from_env(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    monkeypatch.setenv("CHIEF_OFFLINE_LATENCY_MS", "5")
    monkeypatch.setenv("CHIEF_OFFLINE_FAILURE_RATE", "1")
    monkeypatch.setenv("CHIEF_OFFLINE_SEED", "7")
    provider = OfflineProvider()
    assert (provider.latency_ms, provider.failure_rate, provider.seed) == (5.0, 1.0, 7)
    with pytest.raises(ProviderError):
        await provider.complete(_messages("hi"))
    assert sleeps == [0.005]


def test_offline_provider_rejects_bad_options(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        OfflineProvider(failure_rate=1.5)
    with pytest.raises(ValueError, match=">= 0"):
        OfflineProvider(latency_ms=-1)
    monkeypatch.setenv("CHIEF_OFFLINE_FAILURE_RATE", "often")
    with pytest.raises(ValueError, match="CHIEF_OFFLINE_FAILURE_RATE must be a number"):
        OfflineProvider()


async def test_offline_provider_failure_rate_one_always_fails(no_offline_env: None) -> None:
    provider = OfflineProvider(failure_rate=1.0)
    for _ in range(20):
        with pytest.raises(ProviderError, match="offline provider: simulated failure") as info:
            await provider.complete(_messages("hi"))
        assert info.value.retryable is True


async def test_offline_provider_failure_rate_zero_never_fails(no_offline_env: None) -> None:
    provider = OfflineProvider(failure_rate=0.0)
    for _ in range(200):
        await provider.complete(_messages("hi"))


async def _outcomes(provider: OfflineProvider, n: int = 40) -> list[bool]:
    results = []
    for _ in range(n):
        try:
            await provider.complete(_messages("hi"))
            results.append(True)
        except ProviderError:
            results.append(False)
    return results


async def test_offline_provider_failure_rate_half_deterministic_per_seed(no_offline_env: None) -> None:
    first = await _outcomes(OfflineProvider(failure_rate=0.5, seed=42))
    again = await _outcomes(OfflineProvider(failure_rate=0.5, seed=42))
    other = await _outcomes(OfflineProvider(failure_rate=0.5, seed=43))
    assert first == again
    assert first != other
    assert 5 < first.count(False) < 35


async def test_offline_provider_handles_a_1mb_prompt(no_offline_env: None) -> None:
    big = ("lorem ipsum dolor sit amet " * 40 + "\n") * 950  # ~1 MB, ~1,000 lines
    big_diff = DIFF * 1500  # ~0.7 MB of diff
    for prompt in (big, big_diff, "a" * 1_000_000, "-" * 1_000_000, "@@ -" * 250_000):
        started = time.perf_counter()
        reply = await OfflineProvider().complete(_messages(prompt))
        assert reply.text.startswith(LABEL)
        assert time.perf_counter() - started < 5  # generous: catches only pathological behaviour
    assert "Changes: 4500 file(s)" in (await OfflineProvider().complete(_messages(big_diff))).text
