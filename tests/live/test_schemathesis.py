"""Schemathesis against a live server: generated requests from the published OpenAPI document."""

import re
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from importlib.resources import files

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.live.server import LiveServer

# Per operation. The few without parameters (health, this document; GET and HEAD) run out of
# distinct examples at once; those with parameters make up the total counted below. The whole
# module stays well under two minutes on two cores.
EXAMPLES_PER_OPERATION = 80
MINIMUM_REQUESTS = 1_000
MAX_SCORE = 2147483647

# The contract's answers to an invalid request. 413 among them: an invalid request whose body
# is also over 64 bytes may be refused for its size first, as the document says.
REFUSALS = ["400", "401", "404", "405", "413"]
# The answers to a valid request, where the server's state decides: schemathesis's defaults,
# and 422, a score outside the bounds an earlier generated request set on the level.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
# The server runs with the admin API and trusted writes on, so that their operations are tried
# too, with the tokens (schemathesis also tries the admin API without the token and with a
# wrong one: 401s). The writer token goes with every score post: a post with user= is the
# trusted writer's, one without it is a player's, whose session key decides.
ADMIN_TOKEN = "schemathesis-admin-token-0123456789abc"
WRITER_TOKEN = "schemathesis-writer-token-0123456789ab"
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {"expected-statuses": REFUSALS},
            "positive_data_acceptance": {"expected-statuses": ACCEPTED},
        },
        "auth": {
            "openapi": {
                "adminToken": {"bearer": ADMIN_TOKEN},
                "writerToken": {"bearer": WRITER_TOKEN},
            }
        },
    }
)
# The document's pattern for a session key (its sessionkey parameter).
SESSION_KEY_SHAPE = re.compile(r"[A-Za-z0-9_-]+\Z")
# What a valid rules change names as its time zone, where the generated name is none.
TIME_ZONES = ["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham"]
KNOWN_ZONES = zoneinfo.available_timezones()

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
    env = {"SCORESVC_ADMIN_TOKEN": ADMIN_TOKEN, "SCORESVC_WRITER_TOKEN": WRITER_TOKEN}
    server = LiveServer(log, env=env).start()
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
    # A generated key is never valid, so every player's post would stop at 401. Valid posts
    # are instead a player's with a real key, or the trusted writer's (user=, the writer token
    # sent as the document's auth), by turns, so that scores are recorded both ways.
    if _is_valid_score_post(case):
        query = case.query or {}
        if (sent // 2) % 2:
            case.query = {
                **{k: v for k, v in query.items() if k != "user"},
                "sessionkey": session_key,
            }
        else:
            case.query = {"user": "4711", **query}
    elif _is_score_post(case) and _key_ignored_for_user(case.query or {}):
        # The document says a post with user= ignores its session key, yet the key's pattern
        # makes a malformed one "invalid" to schemathesis, which then expects a refusal. Such
        # a post goes without user=, so that the malformed key is what the server judges.
        case.query = {k: v for k, v in (case.query or {}).items() if k != "user"}
    if _is_positive(case) and case.query:
        case.query = _one_selection(case.query, sent)
        # A generated season is rarely one the level has (past ones hold the entries): every
        # other valid request asks for 0 (none: 404), 1 or 2 instead.
        if "season" in case.query and sent % 2:
            case.query["season"] = str(int(case.query["season"]) % 3)
    if _is_positive(case) and case.operation.method.upper() == "PUT" and case.body:
        case.body = _consistent_rules(case.body)
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
    assert re.search(r"POST /\d+/score\?\S*user=\d+\S* 200 ", log)  # the trusted writer's
    assert re.search(r"PUT /admin/levels/\d+/rules\S* 200 ", log)
    assert re.search(r"POST /admin/levels/\d+/seasons\S* 200 ", log)
    assert re.search(r"GET /\d+/highscorelist\?\S*users=\S* 200 ", log)
    assert re.search(r"GET /\d+/highscorelist\?\S*season=\S* 200 ", log)
    assert not re.search(r" 5\d\d \d", log)


def _is_valid_score_post(case) -> bool:
    return _is_score_post(case) and _is_positive(case)


def _is_score_post(case) -> bool:
    return case.operation.label == "POST /{levelid}/score"


def _key_ignored_for_user(query: dict) -> bool:
    """Whether query names a user and, beside it, a session key not of the document's shape."""
    key = query.get("sessionkey")
    return "user" in query and key is not None and not SESSION_KEY_SHAPE.match(str(key))


def _is_positive(case) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _one_selection(query: dict, sent: int) -> dict:
    # OpenAPI 3.0 cannot say that around, from and users exclude each other (two: 400), nor
    # that users names at most 100 different users: a valid request keeps one of them, and
    # the first 100 users.
    selections = [name for name in ("around", "from", "users") if name in query]
    kept = selections[sent % len(selections)] if selections else None
    query = {k: v for k, v in query.items() if k == kept or k not in selections}
    if kept == "users":
        query["users"] = ",".join(query["users"].split(",")[:100])
    return query


def _consistent_rules(rules):
    # Nor can it say that min_score is at most max_score (the level's, where the change names
    # one of them only), or which time zones exist: a valid change names both bounds, in
    # order, and a zone the server knows.
    if not isinstance(rules, dict):
        return rules
    rules = dict(rules)
    if "min_score" in rules or "max_score" in rules:
        low, high = rules.get("min_score", 0), rules.get("max_score", MAX_SCORE)
        rules["min_score"], rules["max_score"] = min(low, high), max(low, high)
    zone = rules.get("timezone")
    if zone is not None and zone not in KNOWN_ZONES:
        rules["timezone"] = TIME_ZONES[len(zone) % len(TIME_ZONES)]
    return rules
