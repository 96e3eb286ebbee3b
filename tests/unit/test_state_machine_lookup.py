"""The one state-machine lookup: the setting first, else by name across every page."""

from __future__ import annotations

from typing import Any

import pytest

from imgproc_shared.settings import Settings
from imgproc_shared.workflow import find_state_machine_arn, image_proc_arn, image_retag_arn

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:"


class PagedStepFunctions:
    """`ListStateMachines` answering two machines a page, as AWS pages a long list."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.calls = 0

    async def list_state_machines(self, nextToken: str | None = None) -> dict[str, Any]:
        self.calls += 1
        start = int(nextToken or 0)
        page: dict[str, Any] = {
            "stateMachines": [
                {"name": n, "stateMachineArn": ARN + n} for n in self.names[start : start + 2]
            ]
        }
        if start + 2 < len(self.names):
            page["nextToken"] = str(start + 2)
        return page


async def test_a_machine_on_a_later_page_is_found_and_a_missing_one_is_none() -> None:
    sfn: Any = PagedStepFunctions(["a", "b", "c", "d", "target"])
    assert await find_state_machine_arn(sfn, "target") == ARN + "target"
    assert sfn.calls == 3
    assert await find_state_machine_arn(sfn, "nowhere") is None


async def test_the_setting_wins_and_the_retag_machine_sits_beside_it() -> None:
    sfn: Any = PagedStepFunctions([])
    settings = Settings(resource_prefix="p", state_machine_arn=ARN + "p-ImageProc")
    assert await image_proc_arn(sfn, settings) == ARN + "p-ImageProc"
    assert await image_retag_arn(sfn, settings) == ARN + "p-ImageRetag"
    assert sfn.calls == 0


async def test_without_the_setting_both_are_found_by_name_or_named_missing() -> None:
    settings = Settings(resource_prefix="p", state_machine_arn=None)
    sfn: Any = PagedStepFunctions(["other", "p-ImageProc", "p-ImageRetag"])
    assert await image_proc_arn(sfn, settings) == ARN + "p-ImageProc"
    assert await image_retag_arn(sfn, settings) == ARN + "p-ImageRetag"
    with pytest.raises(RuntimeError, match="p-ImageProc not found"):
        await image_proc_arn(PagedStepFunctions([]), settings)  # type: ignore[arg-type]
