"""The published OpenAPI document: served, valid OpenAPI 3, and in step with the route list."""

import json
import re
from importlib.resources import files
from unittest.mock import Mock

import jsonschema_rs  # schemathesis's JSON Schema validator, installed with it
import pytest
import schemathesis
import yaml

from scoresvc.application import build_routes
from scoresvc.numbers import MAX_UINT31
from tests.functional.conftest import login, post_score

PACKAGED = files("scoresvc").joinpath("openapi.yaml").read_bytes()

ADMIN_TOKEN = "admin-token-for-openapi-tests-0123456789"
WRITER_TOKEN = "writer-token-for-openapi-tests-012345678"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
AS_JSON = {"Accept": "application/json"}


@pytest.fixture
def document() -> dict:
    return yaml.safe_load(PACKAGED)


def openapi_path(pattern: str) -> str:
    """'<int:levelid>/score' as OpenAPI writes it: '/{levelid}/score'."""
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", pattern)


def test_the_document_is_served_as_yaml_at_a_stable_path(client):
    response = client.get("/openapi.yaml", status=200)
    assert response.headers["Content-Type"] == "application/yaml"
    assert response.body == PACKAGED


def test_head_of_the_document_has_its_headers_and_no_body(client):
    response = client.head("/openapi.yaml", status=200)
    assert response.body == b""
    assert response.headers["Content-Length"] == str(len(PACKAGED))


def test_the_document_is_valid_openapi_3(document):
    assert document["openapi"].startswith("3.")
    schemathesis.openapi.from_dict(document).validate()  # against the OpenAPI 3.0 schema


def test_the_document_describes_every_route_and_method_and_nothing_more(document):
    described = {
        path: {method.upper() for method in item if method != "parameters"}
        for path, item in document["paths"].items()
    }
    routes = build_routes(Mock(), admin=Mock(), metrics=Mock())
    routed: dict[str, set[str]] = {}
    for route in routes:
        if not route.reserved:  # the /admin paths no route takes: 404 by design
            routed.setdefault(openapi_path(route.pattern), set()).update(route.allowed_methods)
    assert described == routed


def test_every_described_operation_lists_its_error_statuses(document):
    paths = document["paths"]
    assert set(paths["/{levelid}/score"]["post"]["responses"]) == {
        "200", "400", "401", "403", "404", "413", "422", "429", "503",
    }  # fmt: skip
    for path in ["/{userid}/login", "/{userid}/"]:
        assert set(paths[path]["get"]["responses"]) == {"200", "400", "403", "404", "429", "503"}
        assert set(paths[path]["head"]["responses"]) == {"200", "400", "403", "404", "503"}
    for path in ["/{levelid}/highscorelist", "/{levelid}/rank/{userid}", "/{levelid}/seasons"]:
        for method in ["get", "head"]:
            assert set(paths[path][method]["responses"]) == {"200", "304", "400", "404", "503"}
    assert set(paths["/admin/levels/{levelid}/rules"]["put"]["responses"]) == {
        "200", "400", "401", "404", "409", "413", "503",
    }  # fmt: skip
    assert set(paths["/healthz"]["get"]["responses"]) == {"200", "503"}
    for path, item in paths.items():
        if path.startswith("/admin/") and path != "/admin/":
            for method, operation in item.items():
                if method != "parameters":
                    assert {"200", "401", "404", "503"} <= set(operation["responses"]), path


def schema_pattern(document: dict, name: str) -> re.Pattern[str]:
    """A string schema's pattern, compiled as JSON Schema means it: all of the text."""
    return re.compile(document["components"]["schemas"][name]["pattern"].removesuffix("$") + r"\Z")


def test_numbers_are_ascii_digits_up_to_the_maximum_with_leading_zeros(document):
    pattern = schema_pattern(document, "Number")
    assert document["components"]["schemas"]["Number"]["x-maximum"] == MAX_UINT31
    for accepted in ["0", "7", "0042", "2147483647", "0002147483647", "1999999999"]:
        assert pattern.match(accepted), accepted
    for refused in ["", "2147483648", "9999999999", "-1", "+5", "1e3", "0x10", "\u0663", "5\n"]:
        assert not pattern.match(refused), refused


def test_a_rank_is_a_number_from_one_on(document):
    pattern = schema_pattern(document, "Rank")
    for accepted in ["1", "01", "10", "100", "1000000000", "2147483647", "0002147483647"]:
        assert pattern.match(accepted), accepted
    for refused in ["", "0", "000", "2147483648", "-1", "+1", "1.0", "1e3"]:
        assert not pattern.match(refused), refused


def assert_valid(document: dict, schema_name: str, instance) -> None:
    """instance against one of the document's schemas (OpenAPI 3.0's are JSON Schema here,
    but for `nullable`, which becomes a type that allows null)."""
    components = json_schema(document["components"])
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": components}
    jsonschema_rs.Draft7Validator(schema).validate(instance)


def json_schema(node):
    """OpenAPI 3.0 schemas as JSON Schema: `nullable: true` beside a type allows null too."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True and "type" in node:
        converted["type"] = [node["type"], "null"]
        if "enum" in node:
            converted["enum"] = [*node["enum"], None]
    return converted


def test_the_json_answers_are_as_the_document_describes_them(client, document):
    post_score(client, 2, login(client, 4711), "1500")
    post_score(client, 2, login(client, 131), "1220")
    as_json = {"Accept": "application/json"}
    for path in ["/2/highscorelist", "/2/highscorelist?from=2", "/2/highscorelist?around=131"]:
        assert_valid(document, "ScoreList", client.get(path, headers=as_json, status=200).json)
    assert_valid(document, "ScoreList", client.get("/9/highscorelist", headers=as_json).json)
    assert_valid(document, "PlayerRank", client.get("/2/rank/131", headers=as_json).json)
    for response in [
        client.get("/2/rank/5", headers=as_json, status=404),
        client.get("/2/highscorelist?from=0", headers=as_json, status=400),
        client.post("/2/highscorelist", headers=as_json, status=405),
        client.post("/2/score", "1", headers=as_json, status=401),
    ]:
        assert_valid(document, "Problem", response.json)


def test_the_examples_in_the_document_fit_their_schemas(document):
    for name in [
        "ScoreList", "PlayerRank", "Problem", "UserIds", "IdempotencyKey", "TimeZone", "Instant",
        "Rules", "RulesChange", "SeasonList", "BanState",
    ]:  # fmt: skip
        assert_valid(document, name, document["components"]["schemas"][name]["example"])


def parameter_names(document: dict, path: str, method: str) -> set[str]:
    """The names of the parameters an operation takes, its path's included."""
    item = document["paths"][path]
    names = set()
    for parameter in [*item.get("parameters", []), *item[method].get("parameters", [])]:
        if "$ref" in parameter:
            parameter = document["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        names.add(parameter["name"])
    return names


def test_every_parameter_and_header_the_views_read_is_described(document):
    assert parameter_names(document, "/{levelid}/score", "post") == {
        "levelid", "sessionkey", "user", "Idempotency-Key",
    }  # fmt: skip
    assert parameter_names(document, "/{levelid}/highscorelist", "get") == {
        "levelid", "around", "from", "users", "season", "If-None-Match",
    }  # fmt: skip
    assert parameter_names(document, "/{levelid}/rank/{userid}", "get") == {
        "levelid", "userid", "season", "If-None-Match",
    }  # fmt: skip
    assert parameter_names(document, "/{levelid}/seasons", "get") == {"levelid", "If-None-Match"}
    assert parameter_names(document, "/admin/levels/{levelid}/scores", "get") == {
        "levelid", "from", "season",
    }  # fmt: skip
    for method in ["get", "head"]:
        assert parameter_names(document, "/admin/levels/{levelid}/export", method) == {
            "levelid", "season",
        }  # fmt: skip
    # The session key or the trusted writer's token: either may authorize a score post.
    assert document["paths"]["/{levelid}/score"]["post"]["security"] == [{}, {"writerToken": []}]
    assert document["components"]["securitySchemes"]["writerToken"]["scheme"] == "bearer"
    put_rules = document["paths"]["/admin/levels/{levelid}/rules"]["put"]
    assert put_rules["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RulesChange"
    }


def test_the_key_user_list_and_time_zone_patterns_are_what_the_server_takes(document):
    key = schema_pattern(document, "IdempotencyKey")
    for accepted in ["a", "A-_9", "x" * 64, "post-4711-2-0001"]:
        assert key.match(accepted), accepted
    for refused in ["", "x" * 65, "a b", "a.b", "\u00e4", "a\n"]:
        assert not key.match(refused), refused
    users = schema_pattern(document, "UserIds")
    for accepted in ["0", "131,4711", "0042,7,7", "2147483647," * 3 + "1"]:
        assert users.match(accepted), accepted
    for refused in ["", ",", "1,", ",1", "1,,2", "1, 2", "2147483648", "-1", "1;2"]:
        assert not users.match(refused), refused
    zone = schema_pattern(document, "TimeZone")
    for accepted in ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"]:
        assert zone.match(accepted), accepted
    for refused in ["", "/etc/passwd", "../UTC", "Europe/", "Europe//Berlin", "Europe.Berlin"]:
        assert not zone.match(refused), refused


@pytest.fixture
def leaderboards(make_client):
    """A client of an app with the admin API and the trusted writer on."""
    return make_client(admin_token=ADMIN_TOKEN, writer_token=WRITER_TOKEN)


def put_rules(client, level: int, rules: dict, status: int = 200):
    body = json.dumps(rules)
    return client.put(f"/admin/levels/{level}/rules", body, headers=ADMIN, status=status)


def text_pattern(document: dict, path: str) -> re.Pattern[str]:
    """The pattern of a GET's 200 text answer, compiled as JSON Schema means it."""
    content = document["paths"][path]["get"]["responses"]["200"]["content"]
    return re.compile(content["text/plain"]["schema"]["pattern"].removesuffix("$") + r"\Z")


def test_the_leaderboard_answers_are_as_the_document_describes_them(leaderboards, document):
    client = leaderboards
    seasons_text = text_pattern(document, "/{levelid}/seasons")
    list_text = text_pattern(document, "/{levelid}/highscorelist")
    assert_valid(document, "Rules", client.get("/admin/levels/2/rules", headers=ADMIN).json)
    for user in range(20):  # more than 15 friends
        client.post(f"/2/score?user={user}", str(100 + user), headers=WRITER, status=200)
    client.post(
        "/2/score?user=4711", "5", headers={**WRITER, "Idempotency-Key": "retry-1"}, status=200
    )
    rules = put_rules(client, 2, {"reset": "daily", "timezone": "Europe/Berlin"}).json
    assert_valid(document, "Rules", rules)
    assert rules["season_ends"] is not None
    assert_valid(document, "Rules", put_rules(client, 3, {"order": "asc", "keep": "sum"}).json)
    started = client.post("/admin/levels/2/seasons", headers=ADMIN, status=200).json
    assert_valid(document, "Rules", started)
    assert started["season"] == 2
    seasons = client.get("/2/seasons", headers=AS_JSON, status=200).json
    assert_valid(document, "SeasonList", seasons)
    assert [season["ended"] is None for season in seasons["seasons"]] == [False, True]
    assert seasons_text.match(client.get("/2/seasons", status=200).text)
    assert seasons_text.match(client.get("/9/seasons", status=200).text)
    assert_valid(document, "SeasonList", client.get("/9/seasons", headers=AS_JSON).json)
    friends = ",".join(str(user) for user in range(21))
    for path in [
        f"/2/highscorelist?season=1&users={friends}",
        "/2/highscorelist?season=1",
        "/2/highscorelist?season=2",
        "/2/highscorelist?season=1&from=3",
        "/2/highscorelist?season=1&around=7",
    ]:
        assert_valid(document, "ScoreList", client.get(path, headers=AS_JSON, status=200).json)
    friends_text = client.get(f"/2/highscorelist?season=1&users={friends}", status=200).text
    assert friends_text.count("=") == 20
    assert list_text.match(friends_text)
    assert_valid(document, "PlayerRank", client.get("/2/rank/7?season=1", headers=AS_JSON).json)
    page = client.get("/admin/levels/2/scores?season=1", headers=ADMIN, status=200).json
    assert_valid(document, "AdminScorePage", page)
    audit = client.get("/admin/audit", headers=ADMIN, status=200).json
    assert_valid(document, "AuditPage", audit)
    assert {"rules", "season"} <= {entry["action"] for entry in audit["entries"]}
    put_rules(client, 4, {"min_score": 10, "max_score": 20, "writes": "server"})
    key = login(client, 131)
    client.post("/3/score?user=131", "7", headers=WRITER, status=200)
    for response in [
        client.get("/2/highscorelist?season=0", headers=AS_JSON, status=404),
        client.get("/2/rank/7?season=3", headers=AS_JSON, status=404),
        client.get("/2/highscorelist?users=1,,2", headers=AS_JSON, status=400),
        client.post("/2/score?user=1", "1", headers=AS_JSON, status=401),
        client.post("/4/score?user=1", "99", headers={**WRITER, **AS_JSON}, status=422),
        client.post(f"/4/score?sessionkey={key}", "15", headers=AS_JSON, status=403),
        client.post(
            f"/2/score?sessionkey={key}",
            "1",
            headers={"Idempotency-Key": "", **AS_JSON},
            status=400,
        ),
        client.put(
            "/admin/levels/3/rules", '{"order": "desc"}', headers={**ADMIN, **AS_JSON}, status=409
        ),
        client.put("/admin/levels/3/rules", '{"max": 1}', headers={**ADMIN, **AS_JSON}, status=400),
    ]:
        assert_valid(document, "Problem", response.json)
    unauthorized = document["components"]["headers"]["WWWAuthenticate"]["schema"]["enum"]
    assert (
        client.post("/2/score?user=1", "1", status=401).headers["WWW-Authenticate"] in unauthorized
    )
    assert client.post("/2/score", "1", status=401).headers["WWW-Authenticate"] in unauthorized
