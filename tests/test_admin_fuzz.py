"""The admin API fuzzed with schemathesis against its own OpenAPI document, over real HTTP.

Every generated request, valid or not, must get a documented status with a body in the
documented shape, and never a 500. Runs on SQLite, and on PostgreSQL when configured (a NUL
byte or an out-of-range value is where the two differ).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Gateway, start_gateway
from tests.stores import store_url

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, str]]:
    workdir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with store_url(request.param, workdir) as url:
        gw = start_gateway(workdir, {"store": {"url": url}})
        admin_key = json.loads(gw.cli("keys", "create", "--name", "fuzz", "--admin", "--json").stdout)["key"]
        yield gw, admin_key
        gw.stop()


@pytest.fixture(scope="module")
def admin_schema(fuzz_target: tuple[Gateway, str]) -> Any:
    gw, _ = fuzz_target
    return schemathesis.openapi.from_url(gw.base_url + "/admin/v1/openapi.json")


schema = schemathesis.pytest.from_fixture("admin_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_never_fails_outside_its_contract(case: Any, fuzz_target: tuple[Gateway, str]) -> None:
    _, admin_key = fuzz_target
    case.call_and_validate(headers={"x-api-key": admin_key}, checks=CHECKS)
