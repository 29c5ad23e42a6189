"""The spec and the emulator agree: schemathesis drives every operation in
schemas/platform-api.yaml against `chanops emulator` over HTTP and validates status
codes, content types, headers and bodies against the spec (bounded examples)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.checks import negative_data_rejection

from support.emulator import EmulatorProcess, start_emulator

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def api_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with start_emulator(tmp_path_factory.mktemp("schemathesis")) as emu:
        # some real objects so generated ids hit existing connections and jobs too
        for i in range(3):
            emu.admin.post(
                "/api/v1/connections",
                json={
                    "name": f"seed{i}",
                    "driver": "shopware6",
                    "credentials": {
                        "url": "https://s.example.com",
                        "accessKeyId": "k",
                        "secretAccessKey": "s",
                    },
                },
            )
        emu.admin.marketplace_install("amazon", "amz", {"sellerId": "A", "marketplace": "DE"})
        yield emu


SPEC = Path(__file__).parents[2] / "src" / "chanops" / "schemas" / "platform-api.yaml"
# The spec file itself (the one /openapi.json serves; a test below checks they match).
# schemathesis's pytest plugin does not run under this pytest, so each operation is a
# parametrized case driving its own hypothesis strategy.
SCHEMA = schemathesis.openapi.from_path(str(SPEC))
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def test_served_spec_is_the_packaged_file(api_emulator: EmulatorProcess) -> None:
    served = httpx.get(f"{api_emulator.url}/openapi.json").json()
    assert served == yaml.safe_load(SPEC.read_text(encoding="utf-8"))


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_emulator_conforms_to_its_spec(operation: Any, api_emulator: EmulatorProcess) -> None:
    headers = {"Authorization": f"Bearer {api_emulator.token}"}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=api_emulator.url, headers=headers, checks=CHECKS)

    run()
