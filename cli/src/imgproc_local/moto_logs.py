"""moto's Step Functions interpreter logs every failure of a state as an ERROR with the repr of
the whole state (about 1 KB, several KB for a Parallel), once per component the failure passes
through. A rejected image ends the workflow in a Fail state, so `imgproc up` printed kilobytes
per rejected image. This filter keeps one line per failure and execution thread: the error and
its cause, nothing of the interpreter's insides."""

from __future__ import annotations

import json
import logging
import re
import threading
import time

# moto.stepfunctions.parser.asl.component.eval_component logs "%s at '%s'" (failure, repr).
ASL_LOGGER = "moto.stepfunctions.parser.asl.component.eval_component"
_DETAILS = re.compile(r"Details=(\{.*\})\s*$", re.DOTALL)
_CAUSE_CHARS = 200
# The same failure, logged again by each enclosing component within this time, is dropped.
_REPEAT_S = 5.0


class OneLineWorkflowFailures(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._last: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "imgproc_one_line", False):  # another filter of ours made it so
            return True
        failure = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        line = _one_line(failure or record.getMessage())
        now = time.monotonic()
        with self._lock:
            previous = self._last.get(threading.get_ident())
            if previous is not None and previous[0] == line and now - previous[1] < _REPEAT_S:
                return False
            self._last[threading.get_ident()] = (line, now)
            if len(self._last) > 1000:  # threads come and go with executions
                self._last = {k: v for k, v in self._last.items() if now - v[1] < _REPEAT_S}
        record.msg, record.args = line, None
        record.imgproc_one_line = True
        # Expected outcomes (a rejection is a Fail state): worth a line, not an alarm.
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _one_line(failure: str) -> str:
    error = cause = None
    found = _DETAILS.search(failure)
    if found:
        try:
            details = json.loads(found.group(1))
        except ValueError:
            details = None
        if isinstance(details, dict):
            for value in details.values():
                if isinstance(value, dict):
                    error, cause = value.get("error"), value.get("cause")
    if error is None:
        name = re.search(r"Error=([^,]+)", failure)
        error = name.group(1) if name else failure.split(",", 1)[0][:80]
    text = f"workflow: a state failed with {error}"
    if cause:
        cause = " ".join(str(cause).split())
        text += f": {cause[:_CAUSE_CHARS]}{'…' if len(cause) > _CAUSE_CHARS else ''}"
    return text


def install() -> None:
    """Once per process, however many endpoints it starts."""
    logger = logging.getLogger(ASL_LOGGER)
    if not any(isinstance(f, OneLineWorkflowFailures) for f in logger.filters):
        logger.addFilter(OneLineWorkflowFailures())
