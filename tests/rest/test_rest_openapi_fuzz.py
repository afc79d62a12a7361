"""Property-based run against the live REST API, driven by its own OpenAPI document (schemathesis).

What it proves: for every operation in ``/client/v4/openapi.json``, generated requests (with a
valid token; schema-valid and schema-violating ones, plus schemathesis' own probes) never get a 5xx, never hang,
and every answer matches the document (status codes, content type, v4 envelope schema).

It stays cheap by construction: generated audio is never real speech, so the service refuses it
at decoding (5006) without running a model. ``positive_data_acceptance`` is excluded because a
schema cannot say "the bytes must be a real audio file": schema-valid random bytes are rightly
refused. ``ignored_auth`` is excluded because it wants 401/403 for a request *without* credentials,
while Cloudflare answers 400 (code 9106) there, and so do we (tests/rest/test_rest_api.py checks
every auth failure exactly).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from flarelet.bindings.ai.rest import create_app
from flarelet.bindings.ai.rest_auth import RestCredentials
from flarelet.bindings.ai.settings import AiSettings

#: per operation; 5 operations, each request answered in milliseconds
MAX_EXAMPLES = 30
#: a request that takes longer than this is a hang, not a slow answer
REQUEST_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def fuzz_server(rest: Any) -> Iterator[str]:
    creds = RestCredentials(tokens=(rest.TOKEN,), account_id=rest.ACCOUNT, token_source="config")
    # a small input limit keeps generated bodies and their decoding small
    with rest.serve_app(create_app(AiSettings(max_input_bytes=256 * 1024), credentials=creds)) as url:
        yield url


@pytest.mark.slow
def test_no_server_error_and_no_hang(fuzz_server: str, rest: Any) -> None:
    # The document is loaded from the live server, as any API tool would load it.
    schema = schemathesis.openapi.from_url(f"{fuzz_server}/client/v4/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5
    headers = {"Authorization": f"Bearer {rest.TOKEN}"}
    statuses: dict[str, set[int]] = {}
    excluded = [positive_data_acceptance, ignored_auth]

    for operation, mode in itertools.product(operations, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):
        seen = statuses.setdefault(operation.label, set())

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
        )
        def exercise(case: Any) -> None:
            response = case.call_and_validate(headers=headers, excluded_checks=excluded, timeout=REQUEST_TIMEOUT_S)
            seen.add(response.status_code)

        exercise()

    # the run reached the service, not only the front door: inputs were judged, models listed
    run_tiny = statuses["POST /accounts/{account_id}/ai/run/@cf/openai/whisper-tiny-en"]
    assert 400 in run_tiny, statuses
    assert 200 in statuses["GET /accounts/{account_id}/ai/models/search"], statuses
