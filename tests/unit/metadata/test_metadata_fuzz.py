"""Bounded schemathesis run against a live metadata server's own OpenAPI, with the token.

Every generated request (valid and invalid) must get no 5xx, a status code the OpenAPI
documents for that operation, and a body matching the documented schema.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from runner.metadata.launcher import ServerProcess, start_server

TOKEN = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

EXAMPLES = 20  # per operation and mode: the whole run stays well under a minute

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("fuzz")
    with start_server(
        f"sqlite:///{folder / 'metadata.db'}", TOKEN, log_path=folder / "server.log"
    ) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: ServerProcess) -> schemathesis.BaseSchema:
    """The server's own OpenAPI document, fetched with the token."""
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json", headers=AUTH)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms(
    api_schema: schemathesis.BaseSchema, fuzzed_server: ServerProcess, mode: GenerationMode
) -> None:
    """Valid and invalid requests to every operation, a few examples each (< 60 s in all)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 24
    seen: set[int] = set()
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=10)
            seen.add(response.status_code)
            assert response.status_code < 500, fuzzed_server.log_tail()

        try:
            check()
        except Unsatisfiable:
            # An operation without inputs (GET /pipelines) has no invalid request to make.
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert 200 in seen or 201 in seen or mode is GenerationMode.NEGATIVE
    assert any(400 <= code < 500 for code in seen)
