"""Built-in extractors: plain text and code as they are; PDF, Office and HTML through markitdown.

Types are detected by content before an extractor is picked (`chief.core.files.detect`), so these only
see files that really are what their MIME type says; they still check what the library gives back.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from chief.core.agents import ExtractedFile
from chief.core.errors import FileRefused
from chief.core.files import DOCX, PPTX, XLSX
from chief.core.hookspecs import hookimpl

_EXTENSION_OF = {
    "application/pdf": ".pdf", DOCX: ".docx", XLSX: ".xlsx", PPTX: ".pptx", "text/html": ".html",
}


class PlainTextExtractor:
    """Text, Markdown, code, diffs, CSV and JSON: the text itself (UTF-8, else Windows-1252)."""

    name = "plain-text"
    mime_types = ("text/plain", "text/markdown", "text/x-code", "text/x-diff", "text/csv", "application/json")
    extensions = (".txt", ".md", ".csv", ".json", ".py", ".js", ".ts", ".diff", ".patch")

    def extract(self, path: str, mime_type: str) -> ExtractedFile:
        """Read the file's text."""
        data = Path(path).read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")
        return ExtractedFile(name=Path(path).name, mime_type=mime_type, text=text.lstrip("\ufeff"))


class MarkItDownExtractor:
    """PDF, DOCX, XLSX, PPTX and HTML to Markdown with Microsoft's markitdown (offline converters only)."""

    name = "markitdown"
    mime_types = ("application/pdf", DOCX, XLSX, PPTX, "text/html")
    extensions = (".pdf", ".docx", ".xlsx", ".pptx", ".html", ".htm")

    def __init__(self) -> None:
        self._converter: Any = None
        self._lock = threading.Lock()

    def _markitdown(self) -> Any:
        with self._lock:  # imported on first use: it pulls in pdfminer, openpyxl, mammoth...
            if self._converter is None:
                from markitdown import MarkItDown

                self._converter = MarkItDown(enable_plugins=False)
            return self._converter

    def extract(self, path: str, mime_type: str) -> ExtractedFile:
        """Convert to Markdown; FileRefused when the document is corrupt."""
        from markitdown import StreamInfo

        if mime_type == "application/pdf":
            _check_pdf(path)
        info = StreamInfo(mimetype=mime_type, extension=_EXTENSION_OF.get(mime_type))
        result = self._markitdown().convert_local(path, stream_info=info)
        text = result.text_content or ""
        return ExtractedFile(name=Path(path).name, mime_type=mime_type, text=text,
                             meta={"title": result.title} if result.title else {})


def _check_pdf(path: str) -> None:
    # markitdown hands back a garbage "PDF" as its raw bytes; pdfminer's parser tells the truth.
    from pdfminer.pdfdocument import PDFDocument
    from pdfminer.pdfparser import PDFParser

    with open(path, "rb") as fh:
        try:
            PDFDocument(PDFParser(fh))
        except Exception as exc:  # noqa: BLE001 - pdfminer raises several unrelated classes
            raise FileRefused("the PDF is corrupt or encrypted") from exc


@hookimpl
def register_extractors(register: Any) -> None:
    """Register the plain-text and markitdown extractors."""
    register(PlainTextExtractor())
    register(MarkItDownExtractor())
