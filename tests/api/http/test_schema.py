"""Every operation of ``/openapi.json``, fuzzed by schemathesis against a real uvicorn server
with an admin token, with inputs that fit the schema and inputs that do not: no request,
however odd, gets a 5xx. Bounded: 25 examples per operation and mode, no deadline (the suite
shares the machine)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.case import Case
from schemathesis.openapi import from_url

from klaw.api.http import Role

from .live import TOKENS, Live, serving

pytestmark = pytest.mark.slow  # schemathesis over every operation

EXAMPLES = 25


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KLAW_HTTP__RATE", "100000")  # fuzzing is not what the limits are about
        env.setenv("KLAW_HTTP__BURST", "100000")
        with serving(tmp_path_factory.mktemp("schema"), "http_schema_flows") as served:
            yield served


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_answers_5xx(live: Live, mode: GenerationMode) -> None:
    schema = from_url(f"{live.url}/openapi.json")
    headers = {"Authorization": f"Bearer {TOKENS[Role.ADMIN]}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # every route of /api/v1, and the probes
    for operation in operations:

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def no_5xx(case: Case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=30)

        try:
            no_5xx()
        except Unsatisfiable:  # no input of it can be made invalid (``/health``: none at all)
            assert mode is GenerationMode.NEGATIVE, operation.label
