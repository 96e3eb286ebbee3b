"""What an import shows while it runs: a live display on a terminal (rich), plain lines when
stdout is a file or a pipe, nothing but the final object with `--json`."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
)

from imgproc_cli.library_import.journal import Outcome

# Statuses a file ends with, beside the image statuses (PROCESSED, REJECTED, FAILED).
DUPLICATE = "DUPLICATE"
SKIPPED = "SKIPPED"
UNREADABLE = "UNREADABLE"
PENDING = "PENDING"  # uploaded but not finished when the run stopped (Ctrl-C, --timeout)

PLAIN_PROGRESS_EVERY_S = 5.0
_SHOWN_LIVE = ("REJECTED", "FAILED", UNREADABLE)


@dataclass
class Counts:
    found: int = 0  # entries the walk or the listing found (folders aside)
    uploaded: int = 0  # put into the library by this run
    resumed: int = 0  # already in the journal from an earlier run
    processed: int = 0
    rejected: int = 0
    failed: int = 0
    duplicates: int = 0
    skipped: int = 0
    unreadable: int = 0
    pending: int = 0

    def add(self, status: str) -> None:
        name = {
            "PROCESSED": "processed",
            "REJECTED": "rejected",
            "FAILED": "failed",
            DUPLICATE: "duplicates",
            SKIPPED: "skipped",
            UNREADABLE: "unreadable",
            PENDING: "pending",
        }[status]
        setattr(self, name, getattr(self, name) + 1)

    @property
    def finished(self) -> int:
        return (
            self.processed
            + self.rejected
            + self.failed
            + self.duplicates
            + self.skipped
            + self.unreadable
        )


@dataclass
class Reporter:
    """Counts and shows them; one instance per run."""

    mode: str  # "live", "plain" or "json"
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    counts: Counts = field(default_factory=Counts)
    walking: bool = True
    started: float = field(default_factory=time.monotonic)
    _last_plain: float = 0.0
    _progress: Progress | None = None
    _task: TaskID | None = None

    @classmethod
    def for_output(cls, as_json: bool) -> Reporter:
        if as_json:
            return cls("json")
        return cls("live" if sys.stdout.isatty() else "plain")

    def __enter__(self) -> Reporter:
        if self.mode == "live":
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"),
                console=Console(file=self.out),
                refresh_per_second=4,
            )
            self._progress.start()
            self._task = self._progress.add_task("importing", total=None, speed="")
        self._last_plain = time.monotonic()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self.refresh()
            self._progress.stop()

    def rate(self) -> float:
        """Files finished per second so far."""
        elapsed = time.monotonic() - self.started
        return self.counts.finished / elapsed if elapsed > 0 else 0.0

    def time_left(self) -> str:
        rate = self.rate()
        remaining = self.counts.found - self.counts.finished
        if rate <= 0 or remaining <= 0:
            return "-"
        seconds = remaining / rate
        text = f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
        return ("at least " if self.walking else "") + text

    def line(self) -> str:
        c = self.counts
        return (
            f"found {c.found}, uploaded {c.uploaded}, processed {c.processed}, "
            f"rejected {c.rejected}, failed {c.failed}, duplicates {c.duplicates}, "
            f"skipped {c.skipped}, unreadable {c.unreadable}"
        )

    def note(self, text: str) -> None:
        """A passing problem, on stderr (stdout stays one JSON object with `--json`)."""
        print(f"imgproc import: {text}", file=sys.stderr, flush=True)

    def found(self) -> None:
        self.counts.found += 1
        self._tick()

    def uploaded(self) -> None:
        self.counts.uploaded += 1
        self._tick()

    def finished(self, outcome: Outcome) -> None:
        self.counts.add(outcome.status)
        text = f"{outcome.source}: {outcome.status}"
        if outcome.image_id:
            text += f"  image {outcome.image_id}"
        if outcome.reason:
            text += f"  ({outcome.reason})"
        if self.mode == "plain" and outcome.status != PENDING:
            print(text, file=self.out, flush=True)
        elif self._progress is not None and outcome.status in _SHOWN_LIVE:
            # Above the live display: what needs a look, not every photo that went well.
            self._progress.console.print(text, markup=False, highlight=False)
        self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        if self.mode == "plain" and now - self._last_plain >= PLAIN_PROGRESS_EVERY_S:
            self._last_plain = now
            print(self._progress_text(), file=self.out, flush=True)
        elif self.mode == "live":
            self.refresh()

    def _progress_text(self) -> str:
        return f"progress: {self.line()}; {self.rate():.1f} files/s, left {self.time_left()}"

    def refresh(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                description=self.line(),
                total=self.counts.found,
                completed=self.counts.finished,
                speed=f"{self.rate():.1f}/s, left {self.time_left()}",
            )

    def summary(
        self, header: dict[str, Any], outcomes: Any, *, interrupted: bool, elapsed: float
    ) -> None:
        """The end: one JSON object (streamed, file by file) or a few lines of counts."""
        counts = asdict(self.counts)
        if self.mode == "json":
            out = self.out
            head = {**header, "interrupted": interrupted, "elapsed_s": round(elapsed, 1)}
            out.write(json.dumps({**head, "counts": counts})[:-1] + ', "files": [')
            for i, outcome in enumerate(outcomes):
                row = {
                    "path": outcome.source,
                    "image_id": outcome.image_id,
                    "status": outcome.status,
                    "reason": outcome.reason,
                }
                out.write(("," if i else "") + json.dumps(row))
            out.write("]}\n")
            out.flush()
            return
        verb = "stopped (Ctrl-C)" if interrupted else "done"
        print(f"import {verb} in {elapsed:.0f} s: {self.line()}", file=self.out)
        if self.counts.resumed:
            print(f"  {self.counts.resumed} were already imported by an earlier run", file=self.out)
        if self.counts.pending:
            print(
                f"  {self.counts.pending} uploaded but not finished yet: run the same command "
                "again to follow them",
                file=self.out,
            )
