"""Every Redis key, stream and channel name Chief uses, in one place, under one prefix.

The prefix (`CHIEF_REDIS_PREFIX`, default `chief`) lets several installations (or tests) share one Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..messages import Lane

GROUP = "workers"  # the consumer group every worker of every task stream belongs to
DEFAULT_PREFIX = "chief"


@dataclass(frozen=True)
class Keys:
    """Names of everything Chief keeps in Redis, under `prefix`."""

    prefix: str = DEFAULT_PREFIX

    def task_stream(self, recipient: str, lane: Lane | int) -> str:
        """The stream of one agent's tasks in one lane (a worker reads higher lanes first)."""
        return f"{self.prefix}:tasks:{recipient}:{Lane(lane).name.lower()}"

    def task_streams(self, recipient: str) -> list[str]:
        """The four lane streams of one agent, highest lane first."""
        return [self.task_stream(recipient, lane) for lane in sorted(Lane, reverse=True)]

    @property
    def recipients(self) -> str:
        """A set of every agent name a task was ever sent to (what "all agents" means to a worker)."""
        return f"{self.prefix}:recipients"

    def reply_stream(self, owner: str) -> str:
        """Results for one orchestrator (the `sender` of the tasks)."""
        return f"{self.prefix}:replies:{owner}"

    @property
    def dead_letters(self) -> str:
        """The dead-letter stream: tasks that failed every attempt, and malformed messages."""
        return f"{self.prefix}:dead"

    def events_channel(self, execution_id: str) -> str:
        """Pub/sub channel of one execution's live events."""
        return f"{self.prefix}:events:{execution_id}"

    @property
    def events_pattern(self) -> str:
        """Pattern matching every execution's events channel."""
        return f"{self.prefix}:events:*"

    def breaker(self, provider: str) -> str:
        """Hash with the circuit state of one provider."""
        return f"{self.prefix}:breaker:{provider}"

    def breaker_window(self, provider: str) -> str:
        """Sorted set of a provider's recent call outcomes (the sliding window)."""
        return f"{self.prefix}:breaker:{provider}:window"

    def cache(self, digest: str) -> str:
        """A cached step result."""
        return f"{self.prefix}:cache:{digest}"

    def worker(self, name: str) -> str:
        """Heartbeat hash of one live worker (expires when it stops beating)."""
        return f"{self.prefix}:worker:{name}"

    @property
    def workers(self) -> str:
        """Sorted set of worker names by last heartbeat."""
        return f"{self.prefix}:workers"

    def all_keys(self) -> str:
        """A SCAN pattern matching every key under this prefix (tests clean up with it)."""
        return f"{self.prefix}:*"
