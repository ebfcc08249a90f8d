"""`chief db copy`: every row of one Chief database into another (SQLite <-> PostgreSQL), verified.

Chief's tables are copied row by row through their SQLAlchemy models (so JSON, times and booleans are
converted between the dialects), in batches of one transaction each, parents before children. LangGraph's
checkpoints are copied through the savers (the two dialects keep them in different tables: `checkpoints`
+ `writes` on SQLite, `checkpoints` + `checkpoint_blobs` + `checkpoint_writes` on PostgreSQL), thread
by thread, oldest checkpoint first, with their pending writes.

Verified: row counts and an order-independent checksum of every table (and of every thread's
checkpoints, as LangGraph reads them back) must match on both sides. Resumable: `resume=True` keeps
what an interrupted copy wrote (tables and threads already complete are skipped, the rest are copied
again with "insert if missing"). A target that already has data is refused unless `force` (which
deletes it first) or `resume`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, Table, create_engine, func, select, text
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ..errors import ChiefError, CopyError
from . import migrate
from .engine import json_dumps, json_loads, make_sqlite_engine
from .models import Base
from .urls import checkpointer_conn_string, dialect_name, mask_url, normalize_url, sync_url

BATCH_ROWS = 1000
Progress = Callable[[str], None]


@dataclass
class TableCheck:
    """Counts and checksums of one table (or of the checkpoints) on both sides."""

    name: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str
    copied: int = 0  # rows (or checkpoints) written by this run

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


@dataclass
class CopyReport:
    """What `copy_database` did and found."""

    source: str
    target: str
    tables: list[TableCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)


# -- engines and savers -----------------------------------------------------------------------------


def _engine(url: str) -> Engine:
    if dialect_name(url) == "sqlite":
        return make_sqlite_engine(url)
    return create_engine(sync_url(url), json_serializer=json_dumps, json_deserializer=json_loads,
                         pool_size=2, max_overflow=0)


@contextmanager
def _saver(url: str) -> Iterator[Any]:
    """LangGraph's synchronous saver on `url` (tables created if missing)."""
    conn_string = checkpointer_conn_string(url)
    if dialect_name(url) == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(conn_string, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=10000")
            saver = SqliteSaver(conn)
            saver.setup()
            yield saver
        finally:
            conn.close()
        return
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ChiefError("PostgreSQL support is not installed: pip install 'chief[postgres]'") from exc
    with psycopg.connect(conn_string, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        saver = PostgresSaver(conn)
        saver.setup()
        yield saver


def checkpoint_tables(dialect: str) -> tuple[str, ...]:
    """LangGraph's tables on a dialect (what `force` empties besides Chief's)."""
    if dialect == "sqlite":
        return ("writes", "checkpoints")
    return ("checkpoint_writes", "checkpoint_blobs", "checkpoints")


# -- canonical values, checksums -----------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _digest(value: Any) -> int:
    data = orjson.dumps(value, default=repr, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return int.from_bytes(hashlib.sha256(data).digest()[:16], "big")


class _Sum:
    """An order-independent checksum: the sum of each row's digest, modulo 2**128."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, row: Any) -> None:
        self.count += 1
        self.total = (self.total + _digest(row)) % (1 << 128)

    @property
    def hex(self) -> str:
        return f"{self.total:032x}"


def _table_sum(engine: Engine, table: Table) -> _Sum:
    acc = _Sum()
    columns = [c.name for c in table.columns]
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=BATCH_ROWS).execute(select(table)):
            acc.add([_canonical(row._mapping[c]) for c in columns])
    return acc


def _threads(saver: Any, dialect: str) -> list[str]:
    sql = "SELECT DISTINCT thread_id FROM checkpoints"
    if dialect == "sqlite":
        return sorted(r[0] for r in saver.conn.execute(sql).fetchall())
    with saver._cursor() as cur:
        cur.execute(sql)
        return sorted(r["thread_id"] for r in cur.fetchall())


def _tuples(saver: Any, thread_id: str) -> list[Any]:
    """Every checkpoint of a thread (all namespaces), oldest first."""
    found = list(saver.list({"configurable": {"thread_id": thread_id}}))
    return sorted(found, key=lambda t: (t.config["configurable"].get("checkpoint_ns", ""),
                                        t.config["configurable"]["checkpoint_id"]))


def _tuple_digest_row(t: Any) -> list[Any]:
    conf = t.config["configurable"]
    parent = (t.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    checkpoint = {k: v for k, v in t.checkpoint.items()}
    metadata = {k: v for k, v in (t.metadata or {}).items()}
    return [conf["thread_id"], conf.get("checkpoint_ns", ""), conf["checkpoint_id"], parent, checkpoint, metadata,
            # by task (the savers order tasks differently); each task's writes keep their order
            sorted(([str(w[0]), w[1], w[2]] for w in (t.pending_writes or [])), key=lambda w: w[0])]


def _checkpoint_sum(saver: Any, dialect: str) -> _Sum:
    acc = _Sum()
    for thread_id in _threads(saver, dialect):
        for t in _tuples(saver, thread_id):
            acc.add(_tuple_digest_row(t))
    return acc


# -- the copy -------------------------------------------------------------------------------------------


def _insert_missing(dialect: str, table: Table) -> Any:
    module = sqlite_dialect if dialect == "sqlite" else pg_dialect
    return module.insert(table).on_conflict_do_nothing()


def _count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _target_has_data(engine: Engine, saver: Any, dialect: str) -> list[str]:
    busy = [t.name for t in Base.metadata.sorted_tables if _count(engine, t)]
    if _threads(saver, dialect):
        busy.append("checkpoints")
    return busy


def _empty_target(engine: Engine, dialect: str) -> None:
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        for name in checkpoint_tables(dialect):
            conn.execute(text(f"DELETE FROM {name}"))  # noqa: S608 - fixed table names


def _copy_table(source: Engine, target: Engine, table: Table, dialect: str) -> int:
    statement = _insert_missing(dialect, table)
    copied = 0
    with source.connect() as src:
        result = src.execution_options(yield_per=BATCH_ROWS).execute(select(table))
        for batch in result.partitions(BATCH_ROWS):
            rows = [dict(r._mapping) for r in batch]
            with target.begin() as dst:  # one transaction per batch: an interruption keeps whole batches
                dst.execute(statement, rows)
            copied += len(rows)
    return copied


def _fix_sequences(target: Engine, dialect: str) -> None:
    """PostgreSQL: move each id sequence past the copied ids (SQLite's AUTOINCREMENT follows by itself)."""
    if dialect != "postgresql":
        return
    with target.begin() as conn:
        for table in Base.metadata.sorted_tables:
            pk = list(table.primary_key.columns)
            for column in pk:
                if len(pk) == 1 and column.type.python_type is int:
                    seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                       {"t": table.name, "c": column.name}).scalar()
                    if seq:
                        conn.execute(text(f"SELECT setval(:s, COALESCE((SELECT MAX({column.name}) FROM "
                                          f"{table.name}), 0) + 1, false)"), {"s": seq})


def _copy_thread(source: Any, target: Any, thread_id: str) -> int:
    written = 0
    for t in _tuples(source, thread_id):
        conf = t.config["configurable"]
        ns = conf.get("checkpoint_ns", "")
        parent = (t.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        put_config: dict[str, Any] = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
        if parent:
            put_config["configurable"]["checkpoint_id"] = parent
        stored = target.put(put_config, t.checkpoint, t.metadata or {}, dict(t.checkpoint.get("channel_versions", {})))
        written += 1
        by_task: dict[str, list[tuple[str, Any]]] = {}
        for task_id, channel, value in t.pending_writes or []:
            by_task.setdefault(task_id, []).append((channel, value))
        for task_id, writes in by_task.items():
            target.put_writes(stored, writes, task_id)
    return written


def copy_database(source_url: str, target_url: str, *, force: bool = False, resume: bool = False,
                  progress: Progress | None = None) -> CopyReport:
    """Copy everything from `source_url` into `target_url`, then verify counts and checksums.

    Raises CopyError if the target holds data (without `force` or `resume`), if the source's schema is
    not current, or if the verification finds a difference.
    """
    say = progress or (lambda _line: None)
    source_url, target_url = normalize_url(source_url), normalize_url(target_url)
    if source_url == target_url:
        raise CopyError("the source and the target are the same database")
    if force and resume:
        raise CopyError("choose --force (replace the target's data) or --resume (continue a copy), not both")
    src_dialect, dst_dialect = dialect_name(source_url), dialect_name(target_url)
    src_rev = migrate.current(source_url)
    if migrate.schema_state(src_rev) != "current":
        raise CopyError(f"the source {mask_url(source_url)} is at revision {src_rev or 'none'}, not "
                        f"{migrate.head()}: run `CHIEF_DATABASE_URL=<source> chief db upgrade` first")
    migrate.upgrade(target_url)
    report = CopyReport(mask_url(source_url), mask_url(target_url))
    source, target = _engine(source_url), _engine(target_url)
    try:
        with _saver(source_url) as src_saver, _saver(target_url) as dst_saver:
            busy = _target_has_data(target, dst_saver, dst_dialect)
            if busy and not (force or resume):
                raise CopyError(f"the target {mask_url(target_url)} already has data ({', '.join(busy)}): "
                                "use --force to replace it, or --resume to continue an interrupted copy")
            if busy and force:
                say(f"emptying {mask_url(target_url)}")
                _empty_target(target, dst_dialect)
            for table in Base.metadata.sorted_tables:
                src_sum = _table_sum(source, table)
                copied = 0
                if not (resume and _table_sum(target, table).hex == src_sum.hex):
                    copied = _copy_table(source, target, table, dst_dialect)
                say(f"{table.name}: {src_sum.count} rows ({copied} written)")
                dst_sum = _table_sum(target, table)
                report.tables.append(TableCheck(table.name, src_sum.count, dst_sum.count, src_sum.hex, dst_sum.hex,
                                                copied))
            _fix_sequences(target, dst_dialect)
            written = 0
            threads = _threads(src_saver, src_dialect)
            done = set(_threads(dst_saver, dst_dialect)) if resume else set()
            for thread_id in threads:
                if thread_id in done and _same_thread(src_saver, dst_saver, thread_id):
                    continue
                written += _copy_thread(src_saver, dst_saver, thread_id)
            src_sum, dst_sum = _checkpoint_sum(src_saver, src_dialect), _checkpoint_sum(dst_saver, dst_dialect)
            say(f"checkpoints: {src_sum.count} in {len(threads)} executions ({written} written)")
            report.tables.append(TableCheck("checkpoints", src_sum.count, dst_sum.count, src_sum.hex, dst_sum.hex,
                                            written))
    finally:
        source.dispose()
        target.dispose()
    bad = [t for t in report.tables if not t.ok]
    if bad:
        detail = "; ".join(f"{t.name}: {t.source_rows} rows / {t.target_rows} rows, checksum "
                           f"{t.source_checksum[:8]} / {t.target_checksum[:8]}" for t in bad)
        raise CopyError(f"the copy differs from the source ({detail}): the target had other data? "
                        "run again with --force to replace it")
    return report


def _same_thread(source: Any, target: Any, thread_id: str) -> bool:
    a, b = _Sum(), _Sum()
    for t in _tuples(source, thread_id):
        a.add(_tuple_digest_row(t))
    for t in _tuples(target, thread_id):
        b.add(_tuple_digest_row(t))
    return a.count == b.count and a.hex == b.hex
