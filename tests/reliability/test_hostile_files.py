"""Hostile files end REJECTED with a reason a person understands, within seconds, without a
worker crash and within a stated memory bound.

The files are in `hostile_files.py`: pixel bombs in JPEG, PNG, HEIC, AVIF and WebP headers, zero
dimensions, zTXt/iTXt chunks that inflate to 256 MiB, truncated HEIC/AVIF/WebP, a HEIC box that
claims 4 GiB, HTML and a ZIP archive named `.jpg`, an empty file, a file over the (1 MiB, for
this stack) upload limit, and the broken files of the corpus.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from fault_stack import (
    MAX_UPLOAD_BYTES,
    WORKER_MODULES,
    alive,
    service_pids,
    tracebacks,
    upload_files,
    vm_hwm_mib,
    wait_terminal,
)
from hostile_files import hostile_files
from stack_process import RunningStack

pytestmark = pytest.mark.e2e

# Peak resident memory of a worker process. A worker at rest is ~90 MiB; decoding any of these
# files (a 144 MP bitmap alone is 144 MB at 8 bits per pixel) would blow through this.
MEMORY_BOUND_MIB = 300
# A rejection is made from the header: seconds, even on a loaded 2-core machine.
REJECTED_WITHIN_S = 30


def _seconds(record: dict[str, object]) -> float:
    started = datetime.fromisoformat(str(record["uploaded_at"]).replace("Z", "+00:00"))
    finished = datetime.fromisoformat(str(record["finished_at"]).replace("Z", "+00:00"))
    return (finished - started).total_seconds()


async def test_every_hostile_file_is_rejected_without_harm(
    fault_stack: RunningStack, log_dir: Path
) -> None:
    settings = fault_stack.settings
    files = hostile_files(MAX_UPLOAD_BYTES)
    before = service_pids(fault_stack.process.pid, WORKER_MODULES)
    restarts_before = fault_stack.log_path.read_text().count("service exited; restarting")
    tracebacks_before = tracebacks(log_dir)

    uploaded = await upload_files(settings, [(name, data) for name, data, _ in files])
    found = await wait_terminal(settings, [u.image_id for u in uploaded], timeout=90)

    outcomes: dict[str, tuple[str, str | None, str | None]] = {}
    for upload, (name, _, words) in zip(uploaded, files, strict=True):
        record = found[upload.image_id]
        outcomes[name] = (record["status"], record.get("error_code"), record.get("error_message"))
        assert record["status"] == "REJECTED", (name, outcomes[name])
        message = str(record.get("error_message") or "")
        assert message and not message.startswith(("Traceback", "{")), (name, message)
        if words:
            assert any(word in message.lower() for word in words), (name, message)
        assert _seconds(record) < REJECTED_WITHIN_S, (name, _seconds(record))
        assert not record.get("tags") and not record.get("thumbnails"), name

    # No worker crashed: the same processes serve, nothing was restarted, no traceback.
    after = service_pids(fault_stack.process.pid, WORKER_MODULES)
    for service, pids in before.items():
        assert all(alive(pid) for pid in pids), (service, pids, after[service])
    assert fault_stack.log_path.read_text().count("service exited; restarting") == restarts_before
    assert tracebacks(log_dir) == tracebacks_before
    peaks = {
        f"{service}:{pid}": vm_hwm_mib(pid)
        for service in ("extractor", "thumbnailer")
        for pid in after[service]
    }
    assert all(peak < MEMORY_BOUND_MIB for peak in peaks.values()), peaks
    slowest = max(_seconds(found[u.image_id]) for u in uploaded)
    print(
        f"\nRELIABILITY hostile: tried={len(files)} rejected={len(files)} "
        f"slowest_rejection_s={slowest:.1f} worker_restarts=0 "
        f"vmhwm_mib={ {k: round(v) for k, v in peaks.items()} } (bound {MEMORY_BOUND_MIB})"
    )
    for name, (_, code, reason) in outcomes.items():
        print(f"  {name}: {code}: {reason}")
