"""Upload ingestion: our file store, type detection by content, extraction through extractor plugins, limits."""

from .detect import DOCX, PPTX, XLSX, Limits, detect, safe_name
from .ingest import IngestedFile, Ingestor, limits_from_env, pick_extractor
from .storage import FileStore

__all__ = [
    "DOCX",
    "PPTX",
    "XLSX",
    "FileStore",
    "IngestedFile",
    "Ingestor",
    "Limits",
    "detect",
    "limits_from_env",
    "pick_extractor",
    "safe_name",
]
