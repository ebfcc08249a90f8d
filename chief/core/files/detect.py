"""What a file is, decided by its content (magic bytes, the members of a zip, decodable text), not its name.

The name's extension only refines text (Markdown vs code vs CSV); it never makes a binary file readable.
Zip containers (the Office formats) are checked against expansion limits here, before anything opens them.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import FileRefused

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"

# Office documents are zip files: the part that names the format.
_OOXML = {"word/document.xml": DOCX, "xl/workbook.xml": XLSX, "ppt/presentation.xml": PPTX}

# Binary formats we recognise but cannot read: a clear refusal beats "binary file".
_REFUSED_MAGIC: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office document (.doc/.xls/.ppt): save it as .docx/.xlsx/.pptx"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "an executable"),
]

CODE_EXTENSIONS = {
    ".py", ".js", ".ts", ".tsx", ".jsx", ".java", ".go", ".rs", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs",
    ".rb", ".php", ".swift", ".kt", ".scala", ".sh", ".bash", ".sql", ".yaml", ".yml", ".toml", ".ini",
    ".cfg", ".xml", ".css", ".scss", ".lua", ".r", ".pl", ".m", ".diff", ".patch", ".dockerfile", ".tf",
}


@dataclass(frozen=True)
class Limits:
    """Upload limits: bytes of one file, bytes a zip container may expand to, members it may hold."""

    max_bytes: int = 20 * 1024 * 1024
    max_expanded_bytes: int = 100 * 1024 * 1024
    max_members: int = 5_000
    max_ratio: float = 200.0  # expanded / compressed: beyond this a zip is a bomb, whatever its size

    @property
    def max_mb(self) -> float:
        return self.max_bytes / (1024 * 1024)


def safe_name(name: str | None) -> str:
    """A display name from an untrusted filename: its last path part, no control characters, bounded."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".") or "file"
    return cleaned[:120]


def _suffix(name: str) -> str:
    return Path(safe_name(name)).suffix.lower()


def _check_zip(path: Path, name: str, limits: Limits) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > limits.max_members:
                raise FileRefused(f"{name}: the archive holds {len(members)} files (limit {limits.max_members})")
            expanded = sum(m.file_size for m in members)
            compressed = max(sum(m.compress_size for m in members), 1)
            if expanded > limits.max_expanded_bytes or expanded / compressed > limits.max_ratio:
                raise FileRefused(
                    f"{name}: expands to {expanded / 1e6:.1f} MB (limit {limits.max_expanded_bytes / 1e6:.0f} MB, "
                    f"ratio {expanded / compressed:.0f}x): refused as a possible zip bomb"
                )
            names = {m.filename for m in members}
    except zipfile.BadZipFile as exc:
        raise FileRefused(f"{name}: the file is corrupt (not a readable zip/Office file)") from exc
    for part, mime in _OOXML.items():
        if part in names:
            return mime
    raise FileRefused(f"{name}: zip archives cannot be read; attach the files inside it instead")


def _text_mime(head: bytes, name: str) -> str | None:
    """The MIME type of a text file, or None when the bytes are not text."""
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is fine; invalid bytes earlier are not.
        if exc.start < len(head) - 4:
            try:
                text = head.decode("cp1252")
            except UnicodeDecodeError:
                return None
            if sum(ch.isprintable() or ch.isspace() for ch in text) < 0.95 * len(text):
                return None
        else:
            text = head[: exc.start].decode("utf-8")
    suffix = _suffix(name)
    stripped = text.lstrip().lower()
    if suffix in (".html", ".htm") or stripped.startswith(("<!doctype html", "<html")):
        return "text/html"
    if suffix == ".json" or (stripped[:1] in ("{", "[") and _is_json(text)):
        return "application/json"
    if suffix in (".csv", ".tsv"):
        return "text/csv"
    if suffix in (".md", ".markdown"):
        return "text/markdown"
    if suffix in (".diff", ".patch") or stripped.startswith(("diff --git", "--- a/")):
        return "text/x-diff"
    if suffix in CODE_EXTENSIONS:
        return "text/x-code"
    return "text/plain"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def detect(path: Path, name: str, limits: Limits | None = None) -> str:
    """The MIME type of the file at `path` by its content; FileRefused when it is not a type we read."""
    limits = limits or Limits()
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise FileRefused(f"{name}: {size / 1e6:.1f} MB is over the {limits.max_mb:.0f} MB limit")
    if size == 0:
        raise FileRefused(f"{name}: the file is empty")
    with path.open("rb") as fh:
        head = fh.read(64 * 1024)
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        return _check_zip(path, name, limits)
    for magic, what in _REFUSED_MAGIC:
        if head.startswith(magic):
            raise FileRefused(f"{name}: cannot read {what}")
    mime = _text_mime(head, name)
    if mime is None:
        raise FileRefused(f"{name}: cannot read this type of file (binary content of an unknown format)")
    return mime
