"""The Celery baseline: a no-op task on the same Redis, every key under a prefix of its own.

The worker subprocess (`celery -A bench.celery_app worker`) reads its prefix from `CHIEF_BENCH_CELERY_PREFIX`
(also its queue's name); the bench builds a client app for the same prefix with `make_app`.
"""

from __future__ import annotations

import os

from celery import Celery

from .common import REDIS_URL


def make_app(prefix: str, url: str = REDIS_URL) -> Celery:
    """A Celery app whose broker and result keys are all under `prefix`, with the no-op task."""
    app = Celery("chief_bench", broker=url, backend=url)
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
        task_default_queue=f"{prefix}q",
        task_serializer="json", result_serializer="json", accept_content=["json"],
        result_expires=600, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.task(name="bench.noop")(noop)
    return app


def noop(value: object = None) -> object:
    """Do nothing; pass the previous result on (a chain step)."""
    return value


app = make_app(os.environ.get("CHIEF_BENCH_CELERY_PREFIX", "chief-bench-celery:"))
