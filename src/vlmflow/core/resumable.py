"""Resumable JSON-lines output: a long job appends finished rows in chunks and a restarted job
continues after the last complete one.

Rows go to `<output>.partial`, flushed and fsynced chunk by chunk, beside `<output>.partial.json`
holding a fingerprint of everything that determines the rows (model contents, data, settings) and
the batch size the rows are being written at. A restart with the same fingerprint keeps the
complete lines (a line cut by the kill is dropped) in whole batches, so it sees the batch
boundaries an uninterrupted run would; a different fingerprint starts over. One process at a time
writes a partial file: `<output>.partial.lock` is held (flock) while the writer lives, and a second
writer fails naming the holder's pid. `finish()` checks that the rows answer exactly the expected
questions, then renames the partial file onto the output, so the output only ever exists complete,
and removes the resume state and the lock file beside it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vlmflow.core.gpu_memory import halving_batch_size, inject_oom
from vlmflow.core.io import write_json, write_jsonl


class PartialInUse(RuntimeError):
    """Another process is writing the same partial output."""


class ResumableJsonl:
    def __init__(
        self,
        output: str | Path,
        fingerprint: dict[str, Any],
        unit: int = 1,
        expected_ids: Sequence[str] | None = None,
    ) -> None:
        self.output = Path(output)
        self.expected_ids = list(expected_ids) if expected_ids is not None else None
        self.total = len(self.expected_ids) if self.expected_ids is not None else None
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.meta = self.output.with_name(self.output.name + ".partial.json")
        self.lock_path = self.output.with_name(self.output.name + ".partial.lock")
        self.fingerprint = json.loads(json.dumps(fingerprint))  # normalise tuples, key types
        self._lock = self._acquire()
        self.unit = unit
        self.rows = self._recover()

    def _acquire(self) -> Any:
        """Hold `<output>.partial.lock` for this writer's lifetime, or fail naming the holder."""
        self.output.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+")  # noqa: SIM115 - held open while this writer lives
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise PartialInUse(
                f"{self.partial}: another process (pid {holder}) is writing this output; a second writer "
                "would mix its rows in. Wait for it to finish, or stop it (kill " + holder + ") and run again."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _recover(self) -> list[dict[str, Any]]:
        """Return the rows a previous run of the same job completed, truncating any torn line."""
        meta = json.loads(self.meta.read_text()) if self.meta.is_file() else {}
        if not (meta.get("fingerprint") == self.fingerprint and self.partial.is_file()):
            self.partial.write_bytes(b"")
            self._write_meta()
            return []
        self.unit = meta["unit"]  # the batch size the rows were written at (halved after running out of memory)
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

    def _write_meta(self) -> None:
        write_json(self.meta, {"fingerprint": self.fingerprint, "unit": self.unit})

    def set_unit(self, unit: int) -> None:
        """Write the rows that follow in batches of `unit` (a resumed run goes on at that size)."""
        self.unit = unit
        self._write_meta()

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append a chunk of rows durably (flushed and fsynced before returning)."""
        rows = list(rows)
        with open(self.partial, "a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.rows.extend(rows)

    def check_complete(self) -> None:
        """Fail unless the rows answer each expected question exactly once, in order."""
        if self.expected_ids is None:
            return
        ids = [row.get("question_id") for row in self.rows]
        if ids != self.expected_ids:
            missing = sorted(set(self.expected_ids) - set(ids))[:3]
            extra = sorted({str(i) for i in ids} - set(self.expected_ids))[:3]
            raise RuntimeError(
                f"{self.partial}: {len(ids)} rows for {len(self.expected_ids)} questions (missing {missing}, "
                f"unexpected {extra}, or out of order); not published as {self.output.name}. Delete the "
                "partial file and run again."
            )

    def finish(self, rows: Iterable[dict[str, Any]] | None = None) -> None:
        """Publish the complete file under the output name (or, given `rows`, those instead: a
        slimmer view of what was written) and forget the resume state."""
        self.check_complete()
        if rows is None:
            os.replace(self.partial, self.output)
        else:
            write_jsonl(self.output, rows)
            self.partial.unlink()
        self.meta.unlink(missing_ok=True)
        self.lock_path.unlink(missing_ok=True)  # removed while held: a later writer makes a new one
        self.close()

    def close(self) -> None:
        """Release the lock (also when the process ends)."""
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


def answer_in_batches(
    writer: ResumableJsonl,
    items: Sequence[Any],
    answer: Callable[[Sequence[Any], int], list[dict[str, Any]]],
    chunk_batches: int,
    desc: str,
    log: logging.Logger | None = None,
) -> None:
    """Answer the items after the rows already written, `writer.unit` at a time, appending every
    `chunk_batches` batches. On running out of device memory the batch is halved and the job goes
    on from the first row not yet written, at that size from then on (a resumed run too)."""

    def answer_rest(batch_size: int) -> None:
        if batch_size != writer.unit:
            writer.set_unit(batch_size)
        chunk: list[dict[str, Any]] = []
        with tqdm(total=len(items), initial=len(writer.rows), desc=desc, unit="q") as bar:
            for start in range(len(writer.rows), len(items), batch_size):
                batch = items[start : start + batch_size]
                inject_oom(len(batch))
                chunk.extend(answer(batch, batch_size))
                bar.update(len(batch))
                if len(chunk) >= chunk_batches * batch_size:
                    writer.append(chunk)
                    chunk = []
            writer.append(chunk)

    halving_batch_size(answer_rest, writer.unit, log, "batch")
