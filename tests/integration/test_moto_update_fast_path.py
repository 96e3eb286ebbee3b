"""The update-expression fast path computes what stock moto computes, call for call.

The same DynamoDB calls go to two endpoints over HTTP: the session's embedded one (every patch
installed, `moto_update_fast_path` among them) and a stock moto 5.2.5 server started here with
none of our patches. Each call's answer (or error code and message) and the item it leaves
must be the same on both: plain updates that take the fast path, and everything that must not
(errors of every kind, functions, arithmetic, nested paths, a write past the size limit that
moto half-applies, transactions that roll back).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from imgproc_local import moto_update_fast_path
from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.settings import Settings

from stack_process import free_port


@pytest.fixture(scope="module")
def stock_moto() -> Iterator[str]:
    """A stock moto server in its own process: moto's code with none of ours."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=2):
                return True
        except OSError:
            return False

    try:
        deadline = time.monotonic() + 30
        while not answers():
            assert process.poll() is None, f"moto.server exited with {process.returncode}"
            assert time.monotonic() < deadline, "moto.server did not answer within 30 s"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _client(endpoint_url: str, key_id: str, secret: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


class _Twins:
    """One table on each endpoint; every call goes to both and must come back the same."""

    def __init__(self, patched: Any, stock: Any) -> None:
        self.clients = (patched, stock)
        self.table = f"fastpath-{uuid.uuid4().hex[:8]}"
        for client in self.clients:
            client.create_table(
                TableName=self.table,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                    {"AttributeName": "gk", "AttributeType": "S"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": "by-gk",
                        "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
                BillingMode="PAY_PER_REQUEST",
            )

    def call(self, operation: str, **kwargs: Any) -> Any:
        outcomes = []
        for client in self.clients:
            try:
                answer = getattr(client, operation)(**kwargs)
                answer.pop("ResponseMetadata", None)
                outcomes.append(("ok", answer))
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code, message = error.get("Code"), error.get("Message")
                if code == "500":
                    # moto raised an unexpected exception (e.g. a "#name" with no names at
                    # all): both servers answer 500, each with its own page.
                    message = None
                outcomes.append(("error", code, message, exc.response.get("Item")))
        assert outcomes[0] == outcomes[1], f"{operation} {kwargs}: {outcomes}"
        return outcomes[0]

    def item(self, pk: str, sk: str = "s") -> Any:
        return self.call(
            "get_item",
            TableName=self.table,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ConsistentRead=True,
        )

    def update(self, pk: str, expression: str, **kwargs: Any) -> Any:
        """One UpdateItem on both, then the item it left on both."""
        outcome = self.call(
            "update_item",
            TableName=self.table,
            Key={"pk": {"S": pk}, "sk": {"S": "s"}},
            UpdateExpression=expression,
            **kwargs,
        )
        self.item(pk)
        return outcome

    def updated(self, pk: str, expression: str, **kwargs: Any) -> Any:
        """`update`, which must succeed on both."""
        outcome = self.update(pk, expression, **kwargs)
        assert outcome[0] == "ok", outcome
        return outcome[1]


@pytest.fixture
def twins(embedded_aws: EmbeddedAws, stock_moto: str) -> _Twins:
    settings = Settings(endpoint_url=embedded_aws.endpoint_url)
    patched = _client(
        embedded_aws.endpoint_url,
        settings.endpoint_access_key_id,
        settings.endpoint_secret_access_key.get_secret_value(),
    )
    return _Twins(patched, _client(stock_moto, "testing", "testing"))


def _values(**values: Any) -> dict[str, Any]:
    return {"ExpressionAttributeValues": {f":{k}": v for k, v in values.items()}}


def _seed(twins: _Twins, pk: str, **attributes: Any) -> None:
    twins.call(
        "put_item",
        TableName=twins.table,
        Item={"pk": {"S": pk}, "sk": {"S": "s"}, **attributes},
    )


def test_plain_updates_take_the_fast_path_and_match_stock_moto(twins: _Twins) -> None:
    before = dict(moto_update_fast_path.fast_path_stats)
    _seed(twins, "a", title={"S": "old"}, n={"N": "5"}, tags={"SS": ["x", "y"]})
    for kind in ("NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"):
        twins.updated(
            "a",
            "SET title = :t, #s = :s, doc = :m, entries = :l, flag = :b, nothing = :z",
            ExpressionAttributeNames={"#s": "status"},
            ReturnValues=kind,
            **_values(
                t={"S": f"new {kind}"},
                s={"S": "PROCESSING"},
                m={"M": {"w": {"N": "2000"}, "h": {"N": "1500"}, "x": {"L": [{"S": "q"}]}}},
                l={"L": [{"N": "1"}, {"S": "two"}]},
                b={"BOOL": True},
                z={"NULL": True},
            ),
        )
    twins.updated("a", "REMOVE flag, #n, never_there", ExpressionAttributeNames={"#n": "nothing"})
    twins.updated(
        "a", "ADD n :d, tally :d, tags :more", **_values(d={"N": "2.5"}, more={"SS": ["y", "z"]})
    )
    twins.updated("a", "ADD fresh :s", **_values(s={"NS": ["1", "2"]}))
    twins.updated("a", "DELETE tags :gone", **_values(gone={"SS": ["x", "absent"]}))
    twins.updated("a", "DELETE tags :all, absent :all", **_values(all={"SS": ["y", "z"]}))
    twins.updated(
        "a",
        "SET title = :t REMOVE doc ADD n :one DELETE fresh :two",
        ReturnValues="ALL_NEW",
        **_values(t={"S": "all four"}, one={"N": "1"}, two={"NS": ["2"]}),
    )
    # With a condition: it holds, it fails (with and without the old item back).
    twins.updated(
        "a",
        "SET title = :t",
        ConditionExpression="attribute_exists(pk) AND #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        **_values(t={"S": "conditional"}, s={"S": "PROCESSING"}),
    )
    for returned in ("ALL_OLD", "NONE"):
        failed = twins.update(
            "a",
            "SET title = :t",
            ConditionExpression="#s <> :s",
            ExpressionAttributeNames={"#s": "status"},
            ReturnValuesOnConditionCheckFailure=returned,
            **_values(t={"S": "never"}, s={"S": "PROCESSING"}),
        )
        assert failed[:2] == ("error", "ConditionalCheckFailedException")
    # if_not_exists: kept where the attribute exists, set where not; from another attribute
    # too, where moto makes both attributes one value (a set added to later changes both).
    twins.updated("a", "ADD tags :p", **_values(p={"SS": ["p"]}))
    twins.updated(
        "a",
        "SET title = if_not_exists(title, :t), #f = if_not_exists(#f, :f), "
        "alias = if_not_exists(tags, :t) REMOVE never_there",
        ExpressionAttributeNames={"#f": "first_seen"},
        ReturnValues="ALL_NEW",
        **_values(t={"S": "ignored"}, f={"S": "2026-12-07"}),
    )
    twins.updated("a", "ADD tags :more", **_values(more={"SS": ["w"]}))
    aliased = twins.item("a")[1]["Item"]
    assert sorted(aliased["alias"]["SS"]) == ["p", "w"], aliased  # moto's, on both
    # An item that does not exist yet is created by the update.
    twins.updated("new", "SET title = :t ADD n :d", **_values(t={"S": "made"}, d={"N": "3"}))
    # An index key set through a placeholder (moto does not type-check that one).
    twins.updated(
        "a", "SET #g = :g", ExpressionAttributeNames={"#g": "gk"}, **_values(g={"S": "g1"})
    )
    after = moto_update_fast_path.fast_path_stats
    # The comparison above is only worth something if the fast path ran: most of these did.
    assert after["fast"] - before.get("fast", 0) >= 15, (before, dict(after))


@pytest.mark.parametrize(
    ("expression", "extra"),
    [
        ("SET pk = :v", _values(v={"S": "x"})),  # a key attribute
        ("SET #k = :v", {"ExpressionAttributeNames": {"#k": "sk"}, **_values(v={"S": "x"})}),
        ("SET a = :missing", _values(v={"S": "x"})),  # undefined (and unused) value
        ("SET #missing = :v", _values(v={"S": "x"})),  # undefined name
        ("SET a = :v", _values(v={"S": "x"}, unused={"S": "y"})),
        ("SET a = :v, a = :w", _values(v={"S": "x"}, w={"S": "y"})),  # one attribute twice
        (
            "SET #a = :v REMOVE a",
            {"ExpressionAttributeNames": {"#a": "a"}, **_values(v={"S": "x"})},
        ),
        ("SET a = :v SET b = :v", _values(v={"S": "x"})),  # two SET clauses
        ("SET status = :v", _values(v={"S": "x"})),  # a reserved word
        ("SET gk = :v", _values(v={"N": "1"})),  # an index key of the wrong type
        ("SET gk = :v", _values(v={"S": ""})),  # an index key left empty
        ("SET gk = :v", _values(v={"S": "fine"})),
        ("ADD title :v", _values(v={"N": "1"})),  # a number added to a string
        ("ADD tags :v", _values(v={"NS": ["1"]})),  # a number set added to a string set
        ("ADD tags :v", _values(v={"S": "x"})),  # neither a number nor a set
        ("DELETE tags :v", _values(v={"S": "x"})),  # not a set
        ("DELETE tags :v", _values(v={"NS": ["1"]})),  # another kind of set
        ("SET n = n + :v", _values(v={"N": "1"})),  # arithmetic
        ("SET n = :v - n", _values(v={"N": "1"})),
        ("SET entries = list_append(entries, :v)", _values(v={"L": [{"S": "z"}]})),
        ("SET title = if_not_exists(title, :v)", _values(v={"S": "kept"})),
        ("SET title = if_not_exists(pk, :v)", _values(v={"S": "x"})),  # a key attribute read
        ("SET title = if_not_exists(#nope, :v)", _values(v={"S": "x"})),  # undefined name
        ("SET title = if_not_exists(doc.w, :v)", _values(v={"N": "3"})),  # a nested path
        ("SET title = if_not_exists(items, :v)", _values(v={"S": "x"})),  # a reserved word
        ("SET gk = if_not_exists(gk, :v)", _values(v={"N": "1"})),  # an index key, plainly
        ("SET title = if_not_exists(title, n)", {}),  # a path where the value goes
        ("SET copied = title", {}),  # a value read from the item
        ("SET items = :v", _values(v={"S": "x"})),  # a reserved word again (ITEMS)
        ("SET doc.w = :v", _values(v={"N": "3"})),  # a nested path
        ("SET doc.nope.deeper = :v", _values(v={"N": "3"})),
        ("REMOVE entries[0]", {}),
        ("SET entries[5] = :v", _values(v={"S": "appended"})),
    ],
)
def test_everything_else_is_still_moto_s_own(
    twins: _Twins, expression: str, extra: dict[str, Any]
) -> None:
    _seed(
        twins,
        "b",
        title={"S": "t"},
        n={"N": "1"},
        tags={"SS": ["x"]},
        entries={"L": [{"S": "a"}, {"S": "b"}]},
        doc={"M": {"w": {"N": "1"}}},
    )
    twins.update("b", expression, ReturnValues="ALL_NEW", **extra)


def test_a_write_past_the_size_limit_leaves_what_moto_leaves(twins: _Twins) -> None:
    # moto applies the actions one by one to the stored item and does not undo the ones before
    # the action that went past the limit: the fast path must leave the same half-done item.
    _seed(twins, "big", title={"S": "t"})
    chunk = "x" * 150_000
    outcome = twins.update(
        "big",
        "SET a = :a, b = :b, c = :c",
        **_values(a={"S": chunk}, b={"S": chunk}, c={"S": chunk}),
    )
    assert outcome[0] == "error"


def test_transactions_match_stock_moto_and_roll_back_alike(twins: _Twins) -> None:
    _seed(twins, "t1", n={"N": "1"})

    def counter(pk: str, delta: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": twins.table,
                "Key": {"pk": {"S": pk}, "sk": {"S": "s"}},
                "UpdateExpression": "ADD n :d, m :m SET #name = :name",
                "ExpressionAttributeNames": {"#name": "name"},
                "ExpressionAttributeValues": {
                    ":d": {"N": delta},
                    ":m": {"SS": ["2026-12"]},
                    ":name": {"S": f"counter {pk}"},
                },
            }
        }

    twins.call("transact_write_items", TransactItems=[counter("t1", "2"), counter("t2", "1")])
    failing = {
        "ConditionCheck": {
            "TableName": twins.table,
            "Key": {"pk": {"S": "t1"}, "sk": {"S": "s"}},
            "ConditionExpression": "n = :never",
            "ExpressionAttributeValues": {":never": {"N": "99"}},
        }
    }
    outcome = twins.call(
        "transact_write_items", TransactItems=[counter("t2", "5"), counter("t3", "1"), failing]
    )
    assert outcome[:2] == ("error", "TransactionCanceledException")
    for pk in ("t1", "t2", "t3"):
        twins.item(pk)
