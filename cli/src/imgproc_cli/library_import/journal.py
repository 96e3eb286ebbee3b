"""The import journal: what an import has put into which library, kept on this machine so that
a second run (after Ctrl-C or a crash) uploads only what is not there yet.

One row per photo content (SHA-256 of a file, or an S3 object's ETag and size) and owner, in
one library (`target`: the endpoint and bucket). A row is written *before* the upload, with the
image id it will use (`pending`), and again after (`uploaded`, then `done` with the terminal
status): a run that died between the upload and the second write finds the pending row and
puts the same image id again, which the stack treats as the same image (the object key and the
execution are named by the image id). Identical files in one library share the row, so the
second is reported as a duplicate of the first instead of becoming a second copy.

Each run's per-file outcomes are kept in `outcomes` until the run has printed its summary, so
the summary of 100,000 files is streamed from disk rather than held in memory.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

State = Literal["pending", "uploaded", "done"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS imports (
    target TEXT NOT NULL,
    owner TEXT NOT NULL,
    content TEXT NOT NULL,
    source TEXT NOT NULL,
    image_id TEXT NOT NULL,
    state TEXT NOT NULL,
    status TEXT,
    reason TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (target, owner, content)
);
CREATE TABLE IF NOT EXISTS outcomes (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    source TEXT NOT NULL,
    image_id TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    started_at REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""
# Outcomes of a run that never printed its summary (killed) are dropped after a day.
_STALE_OUTCOMES_S = 86_400


@dataclass(frozen=True)
class Entry:
    content: str
    owner: str
    source: str
    image_id: str
    state: State
    status: str | None
    reason: str | None


@dataclass(frozen=True)
class Outcome:
    source: str
    image_id: str | None
    status: str
    reason: str | None


class ImportJournal:
    def __init__(self, path: Path, target: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.target = target
        # One connection, used from the event loop's thread only; each write commits on its
        # own (WAL: a commit is cheap, and what is committed survives a kill).
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "DELETE FROM outcomes WHERE started_at < ?", (time.time() - _STALE_OUTCOMES_S,)
        )
        self._seq = 0

    def close(self) -> None:
        self._db.close()

    def lookup(self, owner: str, content: str) -> Entry | None:
        row = self._db.execute(
            "SELECT content, owner, source, image_id, state, status, reason FROM imports "
            "WHERE target = ? AND owner = ? AND content = ?",
            (self.target, owner, content),
        ).fetchone()
        return Entry(*row) if row else None

    def claim(self, owner: str, content: str, source: str, image_id: str) -> Entry:
        """Record a pending upload of `content` from `source` as `image_id`, unless the content
        is already in the journal: returns the row that holds it (this one or the earlier)."""
        self._db.execute(
            "INSERT OR IGNORE INTO imports "
            "(target, owner, content, source, image_id, state, updated_at) "
            "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
            (self.target, owner, content, source, image_id, time.time()),
        )
        entry = self.lookup(owner, content)
        assert entry is not None
        return entry

    def restart(self, owner: str, content: str, image_id: str) -> None:
        """Upload again as a new image (the library lost the earlier one): pending, new id."""
        self._db.execute(
            "UPDATE imports SET image_id = ?, state = 'pending', status = NULL, reason = NULL, "
            "updated_at = ? WHERE target = ? AND owner = ? AND content = ?",
            (image_id, time.time(), self.target, owner, content),
        )

    def mark(
        self,
        owner: str,
        content: str,
        state: State,
        *,
        status: str | None = None,
        reason: str | None = None,
    ) -> None:
        self._db.execute(
            "UPDATE imports SET state = ?, status = ?, reason = ?, updated_at = ? "
            "WHERE target = ? AND owner = ? AND content = ?",
            (state, status, reason, time.time(), self.target, owner, content),
        )

    def count(self, state: State | None = None) -> int:
        """Rows of this library (in `state` when given)."""
        query = "SELECT COUNT(*) FROM imports WHERE target = ?"
        params: tuple[str, ...] = (self.target,)
        if state is not None:
            query += " AND state = ?"
            params += (state,)
        return int(self._db.execute(query, params).fetchone()[0])

    # Per-run outcomes, for the summary.

    def add_outcome(self, run_id: str, outcome: Outcome) -> None:
        self._seq += 1
        self._db.execute(
            "INSERT INTO outcomes (run_id, seq, source, image_id, status, reason, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                self._seq,
                outcome.source,
                outcome.image_id,
                outcome.status,
                outcome.reason,
                time.time(),
            ),
        )

    def outcomes(self, run_id: str) -> Iterator[Outcome]:
        cursor = self._db.execute(
            "SELECT source, image_id, status, reason FROM outcomes WHERE run_id = ? ORDER BY seq",
            (run_id,),
        )
        for row in cursor:
            yield Outcome(*row)

    def forget_run(self, run_id: str) -> None:
        self._db.execute("DELETE FROM outcomes WHERE run_id = ?", (run_id,))
