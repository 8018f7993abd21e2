"""GitHub markdown tables of polars frames, as the reports write them."""

from __future__ import annotations

from typing import Any

import polars as pl


def markdown(frame: pl.DataFrame, title: str | None = None, float_format: str = ".3f") -> str:
    """A GitHub markdown table of the frame under an optional `# title`: floats in `float_format`,
    missing values blank, text columns left-aligned and numbers right-aligned."""

    def cell(value: Any) -> str:
        if value is None:
            return ""
        return format(value, float_format) if isinstance(value, float) else str(value)

    lines = [f"# {title}", ""] if title else []
    lines.append("| " + " | ".join(frame.columns) + " |")
    lines.append("|" + "|".join("---" if dtype == pl.String else "---:" for dtype in frame.dtypes) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines) + "\n"
