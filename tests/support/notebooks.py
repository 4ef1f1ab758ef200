"""Tiny notebooks and pipeline directories for tests of the executor, the local runner and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def write_notebook(path: Path, *cells: str | tuple[str, str], kernel: str | None = "python3") -> Path:
    """Cells are code, or ``("markdown", text)``, or ``("parameters", code)`` for papermill's tagged cell."""
    built = []
    for cell in cells:
        kind, source = cell if isinstance(cell, tuple) else ("code", cell)
        if kind == "markdown":
            built.append(new_markdown_cell(source))
        elif kind == "parameters":
            built.append(new_code_cell(source, metadata={"tags": ["parameters"]}))
        else:
            built.append(new_code_cell(source))
    metadata: dict[str, Any] = {}
    if kernel is not None:
        metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nbformat.write(new_notebook(cells=built, metadata=metadata), path)
    return path


def write_pipeline(directory: Path, spec: dict[str, Any], files: dict[str, str] | None = None) -> Path:
    """``pipeline.yaml`` named ``test`` with ``spec`` in ``directory``, plus the given text files."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {}).items():
        (directory / name).write_text(text)
    path = directory / "pipeline.yaml"
    document = {"apiVersion": "orchest.io/v1alpha1", "kind": "Pipeline", "metadata": {"name": "test"}}
    document["spec"] = spec
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
