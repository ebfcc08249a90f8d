"""Upload ingestion: every listed type is read from small files made here; refusals say why."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from chief.core.errors import FileRefused
from chief.core.files import DOCX, PPTX, XLSX, FileStore, Ingestor, Limits, detect, safe_name
from chief.plugins.extractors import MarkItDownExtractor, PlainTextExtractor


@pytest.fixture
def ingestor(tmp_path: Path) -> Ingestor:
    return Ingestor(FileStore(tmp_path / "store"), [PlainTextExtractor(), MarkItDownExtractor()],
                    limits=Limits(max_bytes=1024 * 1024, max_expanded_bytes=5 * 1024 * 1024))


def make_docx(path: Path) -> None:
    import docx

    doc = docx.Document()
    doc.add_heading("Quarterly plan", level=1)
    doc.add_paragraph("The deadline for the migration is March 3.")
    doc.save(path)


def make_xlsx(path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["region", "revenue"])
    ws.append(["north", 1200])
    ws.append(["south", 3400])
    wb.save(path)


def make_pptx(path: Path) -> None:
    from pptx import Presentation

    prs = Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[1])
    slide.shapes.title.text = "Launch review"
    slide.placeholders[1].text = "Ship the beta on Friday"
    prs.save(path)


def make_pdf(path: Path) -> None:
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path))
    c.drawString(72, 720, "Incident report: the cache expired early.")
    c.save()


CASES = {
    "notes.txt": (lambda p: p.write_text("Buy milk and ship the release."), "text/plain", "ship the release"),
    "readme.md": (lambda p: p.write_text("# Title\n\nSome *markdown*."), "text/markdown", "# Title"),
    "app.py": (lambda p: p.write_text("def add(a, b):\n    return a + b\n"), "text/x-code", "def add"),
    "changes.diff": (lambda p: p.write_text("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"),
                     "text/x-diff", "+b"),
    "sales.csv": (lambda p: p.write_text("region,revenue\nnorth,1200\n"), "text/csv", "north,1200"),
    "data.json": (lambda p: p.write_text(json.dumps({"users": [{"name": "ada"}]})), "application/json", "ada"),
    "page.html": (lambda p: p.write_text("<!doctype html><html><body><h1>Status</h1><p>All green</p></body></html>"),
                  "text/html", "All green"),
    "report.pdf": (make_pdf, "application/pdf", "cache expired early"),
    "plan.docx": (make_docx, DOCX, "March 3"),
    "sales.xlsx": (make_xlsx, XLSX, "3400"),
    "deck.pptx": (make_pptx, PPTX, "Ship the beta"),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_files_extract_every_listed_type(ingestor: Ingestor, tmp_path: Path, name: str) -> None:
    make, mime, needle = CASES[name]
    path = tmp_path / name
    make(path)
    result = await ingestor.ingest(path, name)
    assert result.mime == mime
    assert needle in (result.text or "")
    assert ingestor.store.path(result.key).read_bytes() == path.read_bytes()  # kept in our store


async def test_files_type_is_detected_by_content_not_name(ingestor: Ingestor, tmp_path: Path) -> None:
    path = tmp_path / "upload.bin"
    make_docx(path)
    assert (await ingestor.ingest(path, "notes.txt")).mime == DOCX
    png = tmp_path / "x.txt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(FileRefused, match="cannot read a PNG image"):
        await ingestor.ingest(png, "x.txt")


async def test_files_refuse_binary_of_unknown_format(ingestor: Ingestor, tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(FileRefused, match="cannot read this type of file"):
        await ingestor.ingest(path, "blob.dat")


async def test_files_refuse_over_the_size_limit(ingestor: Ingestor, tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * (1024 * 1024 + 1))
    with pytest.raises(FileRefused, match="over the 1 MB limit"):
        await ingestor.ingest(path, "big.txt")


async def test_files_refuse_a_zip_bomb_before_opening_it(ingestor: Ingestor, tmp_path: Path) -> None:
    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", b"0" * (8 * 1024 * 1024))
    assert path.stat().st_size < 1024 * 1024
    with pytest.raises(FileRefused, match="possible zip bomb"):
        await ingestor.ingest(path, "bomb.docx")


async def test_files_refuse_plain_archives(ingestor: Ingestor, tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.txt", "hello")
    with pytest.raises(FileRefused, match="zip archives cannot be read"):
        await ingestor.ingest(path, "a.zip")


async def test_files_refuse_corrupt_documents(ingestor: Ingestor, tmp_path: Path) -> None:
    pdf = tmp_path / "bad.pdf"
    pdf.write_bytes(b"%PDF-1.4 garbage\nmore garbage\n")
    with pytest.raises(FileRefused, match="PDF is corrupt"):
        await ingestor.ingest(pdf, "bad.pdf")
    docx_path = tmp_path / "bad.docx"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("word/document.xml", "<not xml")
    docx_path.write_bytes(buf.getvalue())
    with pytest.raises(FileRefused, match="unreadable or corrupt"):
        await ingestor.ingest(docx_path, "bad.docx")
    truncated = tmp_path / "cut.xlsx"
    make_xlsx(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(FileRefused, match="corrupt"):
        await ingestor.ingest(truncated, "cut.xlsx")


async def test_files_refuse_empty_files(ingestor: Ingestor, tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(FileRefused, match="empty"):
        await ingestor.ingest(path, "empty.txt")


def test_files_names_are_never_paths(tmp_path: Path) -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\boot.ini") == "boot.ini"
    assert safe_name("\x00evil\n.txt") == "evil.txt"
    assert safe_name("") == "file"
    store = FileStore(tmp_path)
    with pytest.raises(FileRefused):
        store.path("../../etc/passwd")
    key, size = store.put_bytes(b"hello")
    assert store.path(key).parent.parent == tmp_path and size == 5


def test_files_detect_text_flavours(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text('{"a": 1}')
    assert detect(path, "noext") == "application/json"
    path.write_text("<html><body>x</body></html>")
    assert detect(path, "page") == "text/html"
    path.write_text("café au lait", encoding="cp1252")
    assert detect(path, "latin.txt") == "text/plain"
