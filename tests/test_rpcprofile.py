"""The RPC profile as data: the shipped file, overrides, and both ends of the mapping."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import yaml

from chanops.errors import ConfigError
from chanops.rpcprofile import (
    OPERATIONS,
    RECORD_FIELDS,
    AnswerError,
    ProfileError,
    RequestError,
    load_profile,
    merge,
    parse_profile,
)

CHANNELS = "Actindo.Modules.Actindo.Channels"
SHIPPED_TEXT = resources.files("chanops").joinpath("schemas/core1-profile.yaml").read_text("utf-8")


def test_the_shipped_profile_maps_every_operation_to_a_distinct_core1_method() -> None:
    profile = load_profile()
    assert profile.name == "core1"
    assert set(profile.operations) == set(OPERATIONS)
    methods = [op.method for op in profile.operations.values()]
    assert len(set(methods)) == len(methods)
    assert profile.operation("list_connections").path == f"/{CHANNELS}.Connections.getList"
    assert profile.operation("update_connection").method == f"{CHANNELS}.Connections.save"
    assert profile.by_method(f"{CHANNELS}.Jobs.get") is profile.operation("get_job")
    assert profile.by_method("No.Such.method") is None
    for kind, fields in RECORD_FIELDS.items():
        assert tuple(profile.records[kind]) == fields


def test_a_request_round_trips_through_both_ends() -> None:
    profile = load_profile()
    body = profile.request(
        "update_connection",
        id=7,
        if_match=3,
        patch={"name": "shop", "has_order_errors": False, "settings": {"a": None}},
    )
    assert body == {"id": 7, "version": 3, "name": "shop", "hasOrderErrors": False,
                    "settings": {"a": None}}  # fmt: skip
    assert profile.arguments("update_connection", body) == {
        "id": 7,
        "if_match": 3,
        "patch": {"name": "shop", "has_order_errors": False, "settings": {"a": None}},
    }


def test_an_absent_optional_argument_is_not_sent() -> None:
    profile = load_profile()
    body = profile.request("update_connection", id=7, if_match=None, patch={"name": "x"})
    assert body == {"id": 7, "name": "x"}


def test_list_requests_carry_paging_sort_and_filter_conditions() -> None:
    profile = load_profile()
    body = profile.request(
        "list_jobs", start=500, limit=500, filter={"connection_id": 4, "state": None}
    )
    assert body == {
        "start": 500,
        "limit": 500,
        "filter": [{"property": "connectionId", "operator": "=", "value": 4}],
        "sort": [{"property": "id", "direction": "ASC"}],
    }
    assert profile.arguments("list_jobs", body) == {
        "start": 500,
        "limit": 500,
        "filter": {"connection_id": 4},
    }


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"id": 1, "bogus": 2}, "bogus", "unknown field bogus; allowed: id"),
    ],
)
def test_the_emulator_side_names_an_unknown_field(
    body: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(RequestError) as caught:
        load_profile().arguments("get_connection", body)
    assert caught.value.field == field
    assert fragment in caught.value.message


def test_a_save_with_a_field_no_connection_has_is_refused() -> None:
    with pytest.raises(RequestError, match="unknown field colour") as caught:
        load_profile().arguments("update_connection", {"id": 1, "colour": "red"})
    assert caught.value.field == "colour"


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ("x", "filter must be a list of conditions"),
        ([{"property": "connectionId"}], "filter[0] must be {property, operator, value}"),
        (
            [{"property": "name", "operator": "=", "value": 1}],
            "filter[0]: cannot filter on 'name'; allowed: connectionId, state",
        ),
        (
            [{"property": "state", "operator": "like", "value": "x"}],
            "filter[0]: the only operator is '='",
        ),
    ],
)
def test_bad_filter_conditions_are_named(conditions: Any, message: str) -> None:
    body = {"start": 0, "limit": 1, "filter": conditions}
    with pytest.raises(RequestError) as caught:
        load_profile().arguments("list_jobs", body)
    assert caught.value.message == message


def test_an_answer_round_trips_and_renames_records() -> None:
    profile = load_profile()
    connection = {"id": 1, "name": "n", "has_order_errors": True, "updated_at": "t"}
    job = {"id": 2, "kind": "initial_sync", "connection_id": 1, "state": "queued"}
    answer = profile.answer("create_connection", {"connection": connection, "initial_job": job})
    assert answer == {
        "data": {"id": 1, "name": "n", "hasOrderErrors": True, "changed": "t"},
        "initialJob": {"id": 2, "type": "initial_sync", "connectionId": 1, "state": "queued"},
    }
    assert profile.parts("create_connection", answer) == {
        "connection": connection,
        "initial_job": job,
    }
    listing = profile.answer("list_connections", {"rows": [connection], "total": 1})
    assert listing == {"data": [answer["data"]], "total": 1}
    assert profile.parts("list_connections", {"data": []}) == {"rows": []}


@pytest.mark.parametrize(
    ("operation", "answer", "message"),
    [
        ("get_connection", {"success": True}, "data: missing"),
        ("get_connection", {"data": [1]}, "data: expected a connection record"),
        ("list_connections", {"data": {"id": 1}}, "data: expected an array of connection"),
        ("list_connections", {"data": [{"id": 1}, 5]}, r"data\[1\]: expected a connection"),
        ("get_job", [], "data: missing"),
    ],
)
def test_a_wrong_answer_names_its_path(operation: str, answer: Any, message: str) -> None:
    with pytest.raises(AnswerError, match=message):
        load_profile().parts(operation, answer)


def test_an_override_renames_a_controller_and_a_field() -> None:
    override = {
        "operations": {"get_connection": {"method": "Acme.Channels.Connection.fetch"}},
        "records": {"connection": {"name": "title"}},
    }
    profile = load_profile(override)
    assert profile.operation("get_connection").path == "/Acme.Channels.Connection.fetch"
    # the rest of the operation, and of the file, stays as shipped
    assert profile.operation("get_connection").answer == {"connection": "data"}
    assert profile.records["connection"]["id"] == "id"
    assert profile.to_core1("connection", {"name": "x"}) == {"title": "x"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"operations": {"get_conection": {}}},
            "chanops.yaml platform.profile: operations.get_conection: unknown key; known: "
            "list_drivers,",
        ),
        (
            {"operations": {"get_connection": {"method": "Connections.get"}}},
            "chanops.yaml platform.profile: operations.get_connection.method: "
            "'Connections.get' is not <Namespace>.<Controller>.<method>",
        ),
        (
            {"operations": {"get_connection": {"request": {"id": "$ident"}}}},
            "operations.get_connection.request.id: unknown argument $ident; this operation "
            "has: $id",
        ),
        (
            {"operations": {"get_connection": {"request": {"id": 5}}}},
            "operations.get_connection.request: $id is not sent",
        ),
        (
            {"operations": {"get_job": {"method": f"{CHANNELS}.Jobs.getList"}}},
            f"operations.list_jobs.method: {CHANNELS}.Jobs.getList is already get_job's",
        ),
        (
            {"records": {"job": {"state": "type"}}},
            "records.job.state: 'type' is already the Core1 name of kind",
        ),
        (
            {"operations": {"enable": {"answer": {"rows": "data", "total": "total"}}}},
            "operations.enable.answer.total: unknown part; known: rows",
        ),
        (
            {"operations": {"list_jobs": {"answer": {"rows": "data", "total": "data.total"}}}},
            "operations.list_jobs.answer.total: 'data.total' overlaps rows's 'data'",
        ),
        (
            {"operations": {"get_job": {"request": {"...": "$id"}}}},
            'operations.get_job.request."...": only $patch is spread, and only under "..."',
        ),
        (
            {"operations": {"get_job": {"request": {"again": "$id"}}}},
            "operations.get_job.request.again: $id is sent twice",
        ),
        ({"filter_condition": {"equals": 3}}, "filter_condition.equals: expected a non-empty"),
        ({"profile": None}, "profile: expected a non-empty string, got nothing"),
    ],
)
def test_a_bad_override_is_one_error_naming_the_key(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        load_profile(override, source="chanops.yaml platform.profile")
    assert message in str(caught.value)
    assert isinstance(caught.value, ConfigError)  # the command line's one-line errors


def test_the_shipped_file_is_valid_and_an_override_of_the_wrong_type_is_named() -> None:
    assert parse_profile(yaml.safe_load(SHIPPED_TEXT)) == load_profile()
    with pytest.raises(ProfileError, match=r"^chanops\.yaml: operations\.enable: expected a"):
        load_profile({"operations": {"enable": "off"}}, source="chanops.yaml")
    with pytest.raises(ProfileError, match=r"^chanops\.yaml: expected a mapping, got list"):
        load_profile([1], source="chanops.yaml")  # type: ignore[arg-type]
    with pytest.raises(ProfileError, match=r"^the shipped core1 profile: records: missing"):
        parse_profile({"profile": "x", "filter_condition": {}, "operations": {}})


def test_merge_merges_mappings_and_replaces_the_rest() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    assert merge(base, {"a": {"c": [2]}, "e": 3}) == {"a": {"b": 1, "c": [2]}, "d": 1, "e": 3}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1}
