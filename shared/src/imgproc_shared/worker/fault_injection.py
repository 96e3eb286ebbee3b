"""A test-only fault switch: make a stage fail on purpose, from outside the process.

When `IMGPROC_FAULT_FILE` names a file that exists and lists a stage (one name per line, or `*`
for every stage), that stage's handler raises before doing any work, as a real unexpected error
would: the runtime retries, fails the task on the last receive, and the message lands in the
dead-letter queue. Deleting the file clears the fault. Unset (the default, and always in
production) it costs nothing.
"""

from __future__ import annotations

from imgproc_shared.resources import Stage
from imgproc_shared.settings import Settings


class InjectedFault(RuntimeError):
    """The failure the fault file asked for."""


def raise_injected_fault(settings: Settings, stage: Stage) -> None:
    path = settings.fault_file
    if path is None:
        return
    try:
        named = {line.strip() for line in path.read_text().splitlines()}
    except OSError:
        return  # no file: no fault
    if stage.value in named or "*" in named:
        raise InjectedFault(f"injected fault: {path} names the {stage.value} stage")
