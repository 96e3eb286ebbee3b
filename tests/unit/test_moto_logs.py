"""A workflow failure in the embedded Step Functions is one short line, once per execution."""

from __future__ import annotations

import logging

import pytest

from imgproc_local.moto_logs import ASL_LOGGER, OneLineWorkflowFailures, install

FAILURE = (
    'Exception=FailureEventException, Error=NotSupportedImageType, Details={"taskFailedEvent'
    'Details": {"error": "NotSupportedImageType", "cause": "The file is not a supported image; '
    'the image records the reason."}}'
)


def test_a_failure_is_one_line_once(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger(ASL_LOGGER)
    one_line = OneLineWorkflowFailures()
    logger.addFilter(one_line)
    try:
        with caplog.at_level(logging.WARNING, logger=ASL_LOGGER):
            for component in ("StateFail", "Program"):  # each enclosing component logs it
                logger.error("%s at '%s'", FAILURE, f"({component}| {'x' * 5000})")
    finally:
        logger.removeFilter(one_line)
    assert [r.getMessage() for r in caplog.records] == [
        "workflow: a state failed with NotSupportedImageType: The file is not a supported "
        "image; the image records the reason."
    ]
    assert caplog.records[0].levelname == "WARNING"


def test_installing_twice_still_gives_one_line(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger(ASL_LOGGER)
    before = list(logger.filters)
    second = OneLineWorkflowFailures()
    install()
    install()
    logger.addFilter(second)  # as a second endpoint in one process might
    try:
        with caplog.at_level(logging.WARNING, logger=ASL_LOGGER):
            # Its own text: a filter installed earlier in this process drops a repeat.
            logger.error("%s at '%s'", FAILURE.replace("records", "keeps"), "(StateFail| ...)")
    finally:
        for added in [f for f in logger.filters if f not in before]:
            logger.removeFilter(added)
    assert [r.getMessage() for r in caplog.records] == [
        "workflow: a state failed with NotSupportedImageType: The file is not a supported "
        "image; the image keeps the reason."
    ]
