"""Resumable JSON-lines output: a long job appends finished rows in chunks and a restarted job
continues after the last complete one.

Rows go to `<output>.partial`, flushed and fsynced chunk by chunk, beside `<output>.partial.json`
holding a fingerprint of everything that determines the rows (model, data, settings). A restart
with the same fingerprint keeps the complete lines (a line cut by the kill is dropped); a different
fingerprint starts over. `finish()` renames the partial file onto the output, so the output only
ever exists complete. With `unit` > 1 rows are kept in whole units (batches), so a resumed run
sees the same batch boundaries as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlmflow.core.io import write_json, write_jsonl


class ResumableJsonl:
    def __init__(
        self, output: str | Path, fingerprint: dict[str, Any], unit: int = 1, total: int | None = None
    ) -> None:
        self.output = Path(output)
        self.unit = unit
        self.total = total
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.meta = self.output.with_name(self.output.name + ".partial.json")
        self.fingerprint = json.loads(json.dumps(fingerprint))  # normalise tuples, key types
        self.rows = self._recover()

    def _recover(self) -> list[dict[str, Any]]:
        """Return the rows a previous run of the same job completed, truncating any torn line."""
        self.output.parent.mkdir(parents=True, exist_ok=True)
        same_job = self.meta.is_file() and json.loads(self.meta.read_text()) == self.fingerprint
        if not (same_job and self.partial.is_file()):
            self.partial.write_bytes(b"")
            write_json(self.meta, self.fingerprint)
            return []
        rows, ends = [], [0]
        with open(self.partial, "rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break
                ends.append(ends[-1] + len(line))
        keep = len(rows) if len(rows) == self.total else len(rows) - len(rows) % self.unit
        with open(self.partial, "r+b") as handle:
            handle.truncate(ends[keep])
        return rows[:keep]

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append a chunk of rows durably (flushed and fsynced before returning)."""
        rows = list(rows)
        with open(self.partial, "a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.rows.extend(rows)

    def finish(self, rows: Iterable[dict[str, Any]] | None = None) -> None:
        """Publish the complete file under the output name (or, given `rows`, those instead: a
        slimmer view of what was written) and forget the resume state."""
        if rows is None:
            os.replace(self.partial, self.output)
        else:
            write_jsonl(self.output, rows)
            self.partial.unlink()
        self.meta.unlink(missing_ok=True)
