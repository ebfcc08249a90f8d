"""Fixtures and helpers shared by the Redis tests (no tests here): a key prefix per test on the shared
Redis (cleaned up), a private redis-server for destructive tests, and `chief worker` subprocesses."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
import redis as sync_redis

from chief.core.bus.keys import Keys
from chief.core.bus.redis import RedisBus, connect
from chief.core.config import Settings
from chief.core.store import Store

SHARED_REDIS = os.environ.get("CHIEF_TEST_REDIS", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent


def _clean(url: str, prefix: str) -> None:
    client = sync_redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def shared_redis_url() -> str:
    """The shared Redis (fails, never skips, when it cannot be reached)."""
    client = sync_redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=3)
    try:
        client.ping()
    except sync_redis.RedisError as exc:
        pytest.fail(f"Redis is required at {SHARED_REDIS} and could not be reached: {exc}. Start it: "
                    "redis-server --daemonize yes --port 6379 --save '' --appendonly no", pytrace=False)
    finally:
        client.close()
    return SHARED_REDIS


@pytest.fixture
def redis_prefix(shared_redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys are deleted afterwards."""
    prefix = f"chieftest-{secrets.token_hex(4)}"
    try:
        yield prefix
    finally:
        _clean(shared_redis_url, prefix)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of one test's own (no persistence) that the test may restart on the same port."""

    def __init__(self, tmp_path: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is required for this test (apt-get install redis-server)", pytrace=False)
        self.binary, self.dir, self.port = binary, tmp_path, _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = sync_redis.Redis.from_url(self.url)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    return
                except sync_redis.ConnectionError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        pytest.fail(f"private redis-server on port {self.port} did not start", pytrace=False)
                    time.sleep(0.02)  # polling the server's readiness, with a deadline
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> None:
        """Stop and start again: everything in it is lost (nothing is persisted)."""
        self.stop()
        self.start()


@pytest.fixture
def private_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for restarts; stopped afterwards."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis(private_redis_server: RedisServer) -> str:
    """The URL of a private redis-server, for destructive tests (FLUSHALL) that must not touch the shared one."""
    return private_redis_server.url


@pytest.fixture
async def migrated_pg(pg_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database with Chief's schema (for worker subprocesses to share)."""
    store = await Store.open(pg_url, migrate=True)
    await store.close()
    yield pg_url


def settings_for(tmp_path: Path, db_url: str, redis_url: str, prefix: str, **extra) -> Settings:
    """Settings of an orchestrator in a test: no embedded worker, this test's database and prefix."""
    return Settings(home=tmp_path, database_url=db_url, redis_url=redis_url, redis_prefix=prefix,
                    embedded_workers=0, **extra)


class WorkerProcs:
    """`python -m chief.cli worker` subprocesses of one test; all killed at the end."""

    def __init__(self, tmp_path: Path, db_url: str, redis_url: str, prefix: str):
        self.tmp_path, self.db_url, self.redis_url, self.prefix = tmp_path, db_url, redis_url, prefix
        self.procs: dict[str, subprocess.Popen] = {}
        self.keys = Keys(prefix)

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen:
        full_env = {**os.environ, "CHIEF_HOME": str(self.tmp_path), "CHIEF_DATABASE_URL": self.db_url,
                    "CHIEF_REDIS_URL": self.redis_url, "CHIEF_REDIS_PREFIX": self.prefix, "CHIEF_LOAD_PLUGINS": "",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **env}
        log = open(self.tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "chief.cli", "worker", "--name", name, *args],
                                env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp_path)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text()

    async def wait_live(self, *names: str, timeout: float = 20.0) -> None:
        """Wait until each named worker has written its heartbeat."""
        client = connect(self.redis_url, max_connections=2)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for name, proc in self.procs.items():
                        if name in names and proc.poll() is not None:
                            raise AssertionError(f"worker {name} exited: {self.log(name)}")
                    if await client.exists(*(self.keys.worker(n) for n in names)) == len(names):
                        return
                    await asyncio.sleep(0.05)  # polling Redis for the heartbeat, under a timeout
        finally:
            await client.aclose(close_connection_pool=True)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.kill()
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            with suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def worker_procs_factory(tmp_path: Path) -> Iterator:
    made: list[WorkerProcs] = []

    def make(db_url: str, redis_url: str, prefix: str) -> WorkerProcs:
        procs = WorkerProcs(tmp_path, db_url, redis_url, prefix)
        made.append(procs)
        return procs

    try:
        yield make
    finally:
        for procs in made:
            procs.stop_all()


async def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    """Poll an async predicate until it returns something truthy (with a deadline); return that."""
    async with asyncio.timeout(timeout):
        while True:
            value = await predicate()
            if value:
                return value
            await asyncio.sleep(interval)


async def open_redis_bus(url: str, prefix: str, **kwargs) -> RedisBus:
    bus = RedisBus(url, prefix=prefix, **kwargs)
    await bus.start()
    return bus
