from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from imgproc_shared.resources import Queue, ResourceNames, execution_arn, incoming_key
from imgproc_shared.settings import Settings

from stack_process import IMGPROC


def test_defaults_follow_the_reference_design() -> None:
    settings = Settings(_env_file=None)
    assert settings.max_upload_bytes == 50 * 1024 * 1024
    assert settings.max_pixels == 100_000_000
    assert settings.supported_formats == ["JPEG", "PNG", "HEIF", "WEBP", "AVIF"]
    assert (settings.tagger_max_labels, settings.tagger_min_confidence) == (10, 60.0)


def test_environment_with_one_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGPROC_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("IMGPROC_SUPPORTED_FORMATS", "jpeg,png,webp")
    monkeypatch.setenv("IMGPROC_WORKER_CONCURRENCY", "8")
    settings = Settings()
    assert settings.endpoint_url == "http://127.0.0.1:5000"
    assert settings.supported_formats == ["JPEG", "PNG", "WEBP"]
    assert settings.worker_concurrency == 8


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGPROC_MAX_PIXELS", "-1")
    with pytest.raises(ValidationError):
        Settings()


def test_names_come_from_the_prefix() -> None:
    names = ResourceNames("demo")
    assert names.queue(Queue.STATUS_EVENTS) == "demo-status-events"
    assert names.dead_letter_queue(Queue.TAG) == "demo-tag-dlq"
    assert names.state_machine == "demo-ImageProc"
    assert incoming_key("alice", "a1", "img", ".JPG") == "incoming/alice/a1/img.jpg"
    assert execution_arn("arn:aws:states:r:1:stateMachine:demo-ImageProc", "img") == (
        "arn:aws:states:r:1:execution:demo-ImageProc:img"
    )


def test_a_short_signing_secret_is_refused_with_its_variable_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imgproc_status_api.auth import LocalTokens
    from imgproc_status_api.config import ApiSettings

    monkeypatch.setenv("IMGPROC_AUTH_SECRET", "hunter2")
    with pytest.raises(ValidationError, match="IMGPROC_AUTH_SECRET must be at least 32 bytes"):
        ApiSettings()
    with pytest.raises(ValueError, match="at least 32 bytes"):
        LocalTokens("hunter2", 60)

    monkeypatch.setenv("IMGPROC_AUTH_SECRET", "x" * 32)
    assert ApiSettings().with_secret().auth_secret == "x" * 32
    monkeypatch.delenv("IMGPROC_AUTH_SECRET")
    # Unset: a random one, long enough, per process.
    assert len(ApiSettings().with_secret().auth_secret.encode()) >= 32

    # With Cognito the secret signs nothing, so it is not judged.
    monkeypatch.setenv("IMGPROC_AUTH_SECRET", "hunter2")
    assert ApiSettings(cognito_issuer="https://idp.example").cognito_enabled


def test_imgproc_up_refuses_a_short_signing_secret_before_starting_anything(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "IMGPROC_HOME": str(tmp_path), "IMGPROC_AUTH_SECRET": "hunter2"}
    done = subprocess.run(
        [str(IMGPROC), "up", "--data-dir", str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "IMGPROC_AUTH_SECRET must be at least 32 bytes" in done.stderr
    assert not (tmp_path / "data").exists()
