"""Registers the folder of built-in workflows (`code-review`, `document-digest`, ...)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import chief
from chief.core.hookspecs import hookimpl


def builtin_workflow_dir() -> Path | None:
    """The built-in workflows: `chief/_workflows` in a wheel, else the repository's `workflows/`."""
    packaged = importlib.resources.files("chief") / "_workflows"
    if packaged.is_dir():
        return Path(str(packaged))
    repo = Path(chief.__file__).resolve().parents[1] / "workflows"
    return repo if repo.is_dir() else None


@hookimpl
def register_workflow_dirs(register: Any) -> None:
    """Register the built-in workflow folder when it exists."""
    folder = builtin_workflow_dir()
    if folder is not None:
        register(folder)
