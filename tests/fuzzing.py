"""Schemathesis against a running service: what ``tests/test_fuzz.py`` and the planner's fuzz
test (``tests/planner/test_fuzz_plans.py``) share.

``fuzz`` reads the service's own OpenAPI document and sends, for every operation, what
schemathesis generates from it, valid (positive) and invalid (negative), for a bounded number
of examples, with the service's token. Every answer must:

- not be a 5xx (``not_a_server_error``);
- have a status the document declares for the route (``status_code_conformance``);
- match the declared schema, content type and headers (``response_schema_conformance``,
  ``content_type_conformance``, ``response_headers_conformance``).

Server-sent-event streams are left out (a stream that is valid never ends); their refusals
are covered by the services' own tests. ``fixed`` names real objects for an operation's
path parameters, so answers about them are checked too, not only 404s; deletes never get
them (a fuzzed delete would take the object from the operations after it).

``HOIST_TEST_FUZZ_EXAMPLES`` changes the number of examples per operation and mode (10 by
default: each service's run stays well under a minute on a loaded machine).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tools.processes import ServiceProcess

EXAMPLES = int(os.environ.get("HOIST_TEST_FUZZ_EXAMPLES", "10"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
#: The path parameters naming real objects for an operation's path, or None.
Fixed = Callable[[str], dict[str, Any] | None]


def fuzz(
    svc: ServiceProcess,
    document: dict[str, Any],
    statuses: Counter[int],
    fixed: Fixed = lambda path: None,
    *,
    generic: bool = True,
    examples: int = EXAMPLES,
) -> list[str]:
    """Run every operation of ``document`` against ``svc``; the failures, one line each.
    ``statuses`` counts the answers. ``generic=False``: only the operations ``fixed`` names
    real objects for, with them."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the document itself is not valid OpenAPI
        operation = result.ok()
        if operation.path.endswith("/events"):
            continue
        runs: list[dict[str, Any] | None] = [None] if generic else []
        real = fixed(operation.path)
        if real is not None and operation.method != "delete":
            runs.append(real)
        for path_parameters in runs:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(mode, path_parameters=path_parameters)
                failures += _run(svc, operation.label, strategy, mode, statuses, examples)
    return failures


def _run(
    svc: ServiceProcess,
    label: str,
    strategy: Any,
    mode: GenerationMode,
    statuses: Counter[int],
    examples: int,
) -> list[str]:
    failures: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        try:
            case.headers = {**(case.headers or {}), **svc.auth()}  # 401s: test_limits
            answer = case.call(base_url=svc.url, timeout=30)
            statuses[answer.status_code] += 1
            case.validate_response(answer, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:  # with the curl to repeat it
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            failures.append(f"{label} [{mode.value}]: {' | '.join(lines[:14])}")

    try:
        check()
    except Unsatisfiable:  # nothing to make invalid (a route without parameters or body)
        assert mode is GenerationMode.NEGATIVE, label
    return failures


def report(
    name: str, document: dict[str, Any], statuses: Counter[int], failures: list[str]
) -> None:
    """Fail with each distinct failure once; else check that it really sent what it made."""
    assert not failures, "\n".join(dict.fromkeys(failures))
    print(f"{name}: {sum(statuses.values())} requests, by status {sorted(statuses.items())}")
    assert sum(statuses.values()) >= 2 * len(document["paths"])
    assert statuses[200] > 0, statuses
