"""Schemathesis against a live server: generated requests from the published OpenAPI document."""

import re
from collections import Counter
from collections.abc import Iterator
from importlib.resources import files

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.live.server import LiveServer

# Per operation. The four without parameters (health, this document; GET and HEAD) run out of
# distinct examples at once; the nine with parameters make up the total counted below.
EXAMPLES_PER_OPERATION = 160
MINIMUM_REQUESTS = 1_000

# The contract's answers to an invalid request. 413 among them: an invalid request whose body
# is also over 64 bytes may be refused for its size first, as the document says.
REFUSALS = ["400", "401", "404", "405", "413"]
# The server runs with the admin API on, so that its operations are tried too, with the token
# (schemathesis also tries them without it and with a wrong one: 401s).
ADMIN_TOKEN = "schemathesis-admin-token-0123456789abc"
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
        "auth": {"openapi": {"adminToken": {"bearer": ADMIN_TOKEN}}},
    }
)

# The document the server serves (a functional test checks they are the same bytes). Loaded
# here rather than from the live server through schemathesis.pytest.from_fixture, whose lazy
# loading breaks on pytest 9 ('Function' object has no attribute '_nodeid').
schema = schemathesis.openapi.from_path(
    str(files("scoresvc").joinpath("openapi.yaml")), config=CONFIG
)

requests_sent: Counter[str] = Counter()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("schemathesis") / "server.log"
    server = LiveServer(log, env={"SCORESVC_ADMIN_TOKEN": ADMIN_TOKEN}).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def session_key(server) -> str:
    status, key = server.request("GET", "/4711/login")
    assert status == 200
    return key


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_generated_request_gets_a_server_error_or_an_answer_outside_the_schema(
    case, server, session_key
):
    requests_sent[case.operation.label] += 1
    sent = requests_sent[case.operation.label]
    # A generated key is never valid, so every POST would stop at 401. Every other valid POST
    # carries a real key instead, so that scores are recorded too.
    if _is_valid_score_post(case) and sent % 2:
        case.query = {**(case.query or {}), "sessionkey": session_key}
    # OpenAPI 3.0 cannot say that around and from exclude each other (both: 400): a valid
    # request keeps one of them.
    if _is_positive(case) and case.query and {"around", "from"} <= case.query.keys():
        case.query = {
            k: v for k, v in case.query.items() if k != ("from" if sent % 2 else "around")
        }
    # OpenAPI ignores an Accept parameter: every other request asks for JSON here, so that the
    # JSON and problem+json answers are checked against the document too.
    if sent % 2 == 0:
        case.headers = {**(case.headers or {}), "Accept": "application/json"}
    # /admin answers 308: the answer checked is that one, not where it leads.
    case.call_and_validate(
        base_url=f"http://127.0.0.1:{server.port}", timeout=10, allow_redirects=False
    )


def test_the_run_sent_at_least_a_thousand_requests_and_recorded_scores(server):
    sent = sum(requests_sent.values())
    assert sent >= MINIMUM_REQUESTS, f"only {sent} requests: run the whole module"
    print(f"schemathesis sent {sent} requests: {dict(requests_sent)}")
    log = server.log_text()
    assert re.search(r"POST /\d+/score\?\S*sessionkey=\[redacted\]\S* 200 ", log)
    assert not re.search(r" 5\d\d \d", log)


def _is_valid_score_post(case) -> bool:
    return case.operation.method.upper() == "POST" and _is_positive(case)


def _is_positive(case) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive
