"""Upload ingestion: keep the file in our store, detect its type by content, extract its text.

Extraction goes through the extractor plugins (`register_extractors`), in a worker thread with a time
limit, so a slow document never blocks the event loop. Every refusal is a `FileRefused` with one line
a person can act on.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agents import ExtractedFile, Extractor
from ..errors import ChiefError, FileRefused
from .detect import Limits, detect, safe_name
from .storage import FileStore

MAX_TEXT_CHARS = 200_000  # what a step gets of one file; the rest is cut with a note


def limits_from_env() -> Limits:
    """Limits from CHIEF_MAX_FILE_MB (default 20) and CHIEF_MAX_EXPANDED_MB (default 100)."""

    def mb(name: str, default: float) -> int:
        raw = os.environ.get(name)
        try:
            return int(float(raw) * 1024 * 1024) if raw else int(default * 1024 * 1024)
        except ValueError:
            raise ChiefError(f"{name} must be a number of megabytes, got {raw!r}") from None

    return Limits(max_bytes=mb("CHIEF_MAX_FILE_MB", 20), max_expanded_bytes=mb("CHIEF_MAX_EXPANDED_MB", 100))


@dataclass
class IngestedFile:
    """One upload after ingestion: what it is, where its bytes are, and its text (or why it was refused)."""

    name: str
    mime: str
    size: int
    key: str
    text: str | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_input(self) -> dict[str, Any]:
        """The file as a workflow input item (`{{item.name}}`, `{{item.text}}`)."""
        return {"name": self.name, "mime": self.mime, "size": self.size, "text": self.text or ""}

    def extracted(self) -> ExtractedFile:
        return ExtractedFile(name=self.name, mime_type=self.mime, text=self.text or "", meta=dict(self.meta))


def pick_extractor(extractors: Sequence[Extractor], mime: str, name: str) -> Extractor | None:
    """The first extractor that declares this MIME type (patterns like `text/*` allowed), else by extension."""
    for ex in extractors:
        if any(fnmatch.fnmatch(mime, pattern) for pattern in ex.mime_types):
            return ex
    suffix = Path(name).suffix.lower()
    for ex in extractors:
        if suffix and suffix in [e.lower() for e in ex.extensions]:
            return ex
    return None


class Ingestor:
    """Turns an upload (a temporary path and an untrusted name) into an `IngestedFile`."""

    def __init__(self, store: FileStore, extractors: Sequence[Extractor], *, limits: Limits | None = None,
                 timeout_s: float = 60.0) -> None:
        self.store = store
        self.extractors = list(extractors)
        self.limits = limits or limits_from_env()
        self.timeout_s = timeout_s

    async def ingest(self, path: Path | str, name: str | None) -> IngestedFile:
        """Store, detect and extract; raises FileRefused with a one-line reason."""
        display = safe_name(name)
        source = Path(path)
        try:
            size = source.stat().st_size
        except OSError as exc:
            raise FileRefused(f"{display}: the upload is gone ({exc.strerror})") from exc
        if size > self.limits.max_bytes:
            raise FileRefused(f"{display}: {size / 1e6:.1f} MB is over the {self.limits.max_mb:.0f} MB limit")
        key, size = await asyncio.to_thread(self.store.put, source, max_bytes=self.limits.max_bytes)
        stored = self.store.path(key)
        mime = await asyncio.to_thread(detect, stored, display, self.limits)
        extractor = pick_extractor(self.extractors, mime, display)
        if extractor is None:
            raise FileRefused(f"{display}: no extractor reads {mime}")
        try:
            result = await asyncio.wait_for(asyncio.to_thread(extractor.extract, str(stored), mime), self.timeout_s)
        except TimeoutError as exc:
            raise FileRefused(f"{display}: reading it took longer than {self.timeout_s:.0f} s") from exc
        except FileRefused as exc:
            raise FileRefused(f"{display}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - any library failure on a bad document is a refusal
            raise FileRefused(f"{display}: the document is unreadable or corrupt ({type(exc).__name__})") from exc
        text = result.text or ""
        if not text.strip():
            raise FileRefused(f"{display}: no text could be read from it (empty, scanned or corrupt)")
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS] + f"\n\n[... cut: {len(text) - MAX_TEXT_CHARS} more characters]"
        return IngestedFile(name=display, mime=mime, size=size, key=key, text=text,
                            meta={"extractor": extractor.name, **(result.meta or {})})
