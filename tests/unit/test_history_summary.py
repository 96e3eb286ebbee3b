"""The status API's execution timeline: Step Functions history events summarized per state."""

from __future__ import annotations

from datetime import UTC, datetime

from imgproc_status_api.api.routes.executions import summarize_history


def test_history_summary_attributes_parallel_task_events_to_their_states() -> None:
    t = [datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in range(10)]
    events = [
        {"id": 1, "type": "ExecutionStarted", "timestamp": t[0]},
        {
            "id": 2,
            "type": "ParallelStateEntered",
            "timestamp": t[0],
            "previousEventId": 1,
            "stateEnteredEventDetails": {"name": "Process"},
        },
        {
            "id": 3,
            "type": "TaskStateEntered",
            "timestamp": t[1],
            "previousEventId": 2,
            "stateEnteredEventDetails": {"name": "Tag"},
        },
        {
            "id": 4,
            "type": "TaskStateEntered",
            "timestamp": t[1],
            "previousEventId": 2,
            "stateEnteredEventDetails": {"name": "Thumbnail"},
        },
        {"id": 5, "type": "TaskScheduled", "timestamp": t[1], "previousEventId": 3},
        {"id": 6, "type": "TaskScheduled", "timestamp": t[1], "previousEventId": 4},
        {"id": 7, "type": "TaskSucceeded", "timestamp": t[3], "previousEventId": 6},
        {
            "id": 8,
            "type": "TaskStateExited",
            "timestamp": t[3],
            "previousEventId": 7,
            "stateExitedEventDetails": {"name": "Thumbnail"},
        },
        {
            "id": 9,
            "type": "TaskFailed",
            "timestamp": t[4],
            "previousEventId": 5,
            "taskFailedEventDetails": {"error": "States.Timeout", "cause": "no heartbeat"},
        },
    ]
    states = {s.name: s for s in summarize_history(events, "RUNNING")}
    assert states["Thumbnail"].outcome == "succeeded" and states["Thumbnail"].duration_ms == 2000
    assert states["Tag"].outcome == "failed" and states["Tag"].error == "States.Timeout"
    assert states["Process"].outcome == "running"
    assert states["Tag"].attempts == 1 and states["Thumbnail"].attempts == 1
