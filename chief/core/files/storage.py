"""Our file store: uploaded bytes kept under CHIEF_HOME by their SHA-256, never by their (untrusted) name."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import FileRefused

CHUNK = 1024 * 1024


class FileStore:
    """Content-addressed files under `root` (`<root>/<aa>/<sha256>`); Chainlit's own copies do not last."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Where the file with this key lives; the key must be a SHA-256 hex digest (never a name)."""
        if len(key) != 64 or any(ch not in "0123456789abcdef" for ch in key):
            raise FileRefused(f"not a file key: {key[:80]!r}")
        return self.root / key[:2] / key

    def put(self, source: Path | str, *, max_bytes: int | None = None) -> tuple[str, int]:
        """Copy the file at `source` in (size-checked while copying); return (key, size)."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                while chunk := src.read(CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise FileRefused(f"over the {max_bytes / (1024 * 1024):.0f} MB limit")
                    digest.update(chunk)
                    dst.write(chunk)
            key = digest.hexdigest()
            final = self.path(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
            return key, size
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store bytes; return (key, size)."""
        with tempfile.NamedTemporaryFile(delete=False) as tmp:
            tmp.write(data)
        try:
            return self.put(tmp.name)
        finally:
            os.unlink(tmp.name)

    def copy_to(self, key: str, target: Path) -> None:
        """Copy a stored file out (for a download)."""
        shutil.copyfile(self.path(key), target)
