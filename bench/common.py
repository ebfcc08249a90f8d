"""What every bench section shares: the services' URLs, a fresh database, a Redis key prefix that is deleted
afterwards, subprocesses that are always stopped (also on Ctrl-C or an error), percentiles and peak memory."""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("CHIEF_BENCH_REDIS", "redis://127.0.0.1:6379/0")
PG_ADMIN = os.environ.get("CHIEF_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

# What this run started or created and has not cleaned up yet: `cleanup_all` (also at exit) ends it, so a
# Ctrl-C that lands in the middle of a section's own clean-up leaves nothing behind either.
_started: list[subprocess.Popen[bytes]] = []
_prefixes: set[str] = set()
_databases: set[tuple[str, str]] = set()
_dirs: set[Path] = set()


def new_prefix(kind: str = "bench") -> str:
    """A Redis key prefix no one else uses (everything under it is deleted at the end)."""
    prefix = f"chief-{kind}-{secrets.token_hex(4)}"
    _prefixes.add(prefix)
    return prefix


def base_env(**extra: str) -> dict[str, str]:
    """This environment without Chief's service settings (each section sets its own), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIEF_") or k.startswith("CHIEF_BENCH_")}
    env.pop("CI", None)  # Chainlit changes behaviour under CI=true
    env.update({"PYTHONUNBUFFERED": "1", "CHIEF_LOAD_PLUGINS": "", **extra})
    return env


def spawn(args: Sequence[str], *, env: dict[str, str] | None = None, log: Path | None = None,
          cwd: Path = ROOT, stdout: int | None = None) -> subprocess.Popen[bytes]:
    """Start a process that `stop`/`stop_all` will end; its output goes to `log` (or is dropped)."""
    if log is not None:
        with log.open("ab") as out:
            proc = subprocess.Popen(list(args), env=env, cwd=cwd, stdout=stdout or out, stderr=out)
    else:
        proc = subprocess.Popen(list(args), env=env, cwd=cwd, stdout=stdout or subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    _started.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM; a second SIGTERM after `timeout`/2 s (`chief worker` then stops at once); SIGKILL after
    `timeout` s."""
    for signal_it, wait_s in ((proc.terminate, timeout / 2), (proc.terminate, timeout / 2), (proc.kill, 5.0)):
        if proc.poll() is not None:
            break
        signal_it()
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
    if proc in _started:
        _started.remove(proc)


def stop_all() -> None:
    """Stop every process this run started and has not stopped yet."""
    for proc in list(_started):
        stop(proc)


def cleanup_all() -> None:
    """Stop the processes, delete the Redis keys, drop the databases and remove the directories that are
    still left (after an error or Ctrl-C)."""
    stop_all()
    for prefix in list(_prefixes):
        try:
            asyncio.run(delete_keys(prefix))
        except Exception as exc:  # noqa: BLE001 - clean up the rest, then say what is left
            print(f"warning: Redis keys under {prefix!r} not deleted: {exc}", file=sys.stderr)
    for admin_url, name in list(_databases):
        try:
            _drop_database(admin_url, name)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: database {name} not dropped: {exc}", file=sys.stderr)
    for path in list(_dirs):
        _remove_dir(path)


atexit.register(cleanup_all)


def run_async(main: Coroutine[Any, Any, T], grace_s: float = 2.0) -> T:
    """`asyncio.run(main)`, except that tasks still running at the end get `grace_s` seconds to honour
    their cancellation instead of forever (see `close_within`)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=grace_s))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def close_within(closing: Awaitable[Any], what: str, timeout_s: float = 5.0) -> None:
    """Await `closing`, but give up after `timeout_s` with a warning.

    Why: with redis-py 8.1 on Python 3.11, cancelling a task blocked in XREAD now and then loses the
    cancellation (about 1 in 30 here); RedisBus's result reader then loops on and its `close()` never
    returns. The bench must still finish and report.
    """
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(closing, timeout_s)
    except TimeoutError:
        pass
    if time.perf_counter() - t0 >= timeout_s:
        print(f"warning: closing {what} took over {timeout_s:g} s; left behind", file=sys.stderr, flush=True)


def python_args(*args: str) -> list[str]:
    """`python args...` with this interpreter."""
    return [sys.executable, *args]


def log_tail(path: Path, lines: int = 30) -> str:
    """The end of a process's log, for an error message."""
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def peak_rss_mb(pid: int) -> float | None:
    """The process's resident-memory high-water mark (VmHWM) in MiB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def pct(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 of millisecond samples, rounded to µs."""
    return {"p50_ms": round(statistics.median(values), 3), "p95_ms": round(pct(values, 0.95), 3),
            "p99_ms": round(pct(values, 0.99), 3)}


def ratio(ours: float | None, baseline: float | None) -> float | None:
    """ours / baseline, or None when either is missing."""
    if not ours or not baseline:
        return None
    return round(ours / baseline, 2)


@contextmanager
def database(admin_url: str = PG_ADMIN) -> Iterator[str]:
    """A fresh PostgreSQL database with Chief's schema; yields its SQLAlchemy URL; dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"chief_bench_{secrets.token_hex(5)}"
    _databases.add((admin_url, name))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(admin_url).set(database=name, drivername="postgresql+psycopg")
        url_text = url.render_as_string(hide_password=False)
        asyncio.run(_migrate(url_text))
        yield url_text
    finally:
        _drop_database(admin_url, name)


def _drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _databases.discard((admin_url, name))


async def _migrate(url: str) -> None:
    from chief.core.store import Store

    await (await Store.open(url, migrate=True)).close()


async def delete_keys(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every Redis key that starts with `prefix`; the number deleted."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.delete(*keys[i:i + 500])
        _prefixes.discard(prefix)
        return len(keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def redis_prefix(kind: str = "bench", url: str = REDIS_URL) -> AsyncIterator[str]:
    """A fresh key prefix whose keys are deleted afterwards."""
    prefix = new_prefix(kind)
    try:
        yield prefix
    finally:
        await delete_keys(prefix, url)


async def wait_for_key(client: Any, key: str, timeout: float = 60.0,
                       proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Wait until `key` exists (a process announced it is ready); fail early if `proc` died."""
    async with asyncio.timeout(timeout):
        while not await client.exists(key):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{log_tail(log) if log else ''}")
            await asyncio.sleep(0.05)  # polling another process's start-up: there is no event to wait on


@contextmanager
def workdir(kind: str) -> Iterator[Path]:
    """A temporary directory (CHIEF_HOME, logs) removed afterwards."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=f"chief-bench-{kind}-"))
    _dirs.add(path)
    try:
        yield path
    finally:
        _remove_dir(path)


def _remove_dir(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    _dirs.discard(path)


def start_workers(count: int, *, db_url: str, prefix: str, home: Path, concurrency: int = 32,
                  agents: str = "echo") -> list[tuple[subprocess.Popen[bytes], Path]]:
    """`count` `chief worker` processes on Redis `prefix` and database `db_url` (result cache off: every
    step runs its agent); each with its log file."""
    env = base_env(CHIEF_HOME=str(home), CHIEF_DATABASE_URL=db_url, CHIEF_REDIS_URL=REDIS_URL,
                   CHIEF_REDIS_PREFIX=prefix, CHIEF_CACHE_TTL_S="0", CHIEF_OFFLINE_LATENCY_MS="0")
    started = []
    for i in range(count):
        log = home / f"worker-{i}.log"
        proc = spawn(python_args("-m", "chief.cli", "worker", "--name", f"bench-{i}", "--agents", agents,
                                 "--concurrency", str(concurrency)), env=env, log=log)
        started.append((proc, log))
    return started


async def wait_for_workers(workers: list[tuple[subprocess.Popen[bytes], Path]], prefix: str) -> None:
    """Wait until every worker of `start_workers` beats in Redis."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        for i, (proc, log) in enumerate(workers):
            await wait_for_key(client, f"{prefix}:worker:bench-{i}", proc=proc, log=log)
    finally:
        await client.aclose()
