"""The published OpenAPI document: served, valid OpenAPI 3, and in step with the route list."""

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
        "200", "400", "401", "403", "404", "413", "429", "503",
    }  # fmt: skip
    for path in ["/{userid}/login", "/{userid}/"]:
        assert set(paths[path]["get"]["responses"]) == {"200", "400", "403", "404", "429", "503"}
        assert set(paths[path]["head"]["responses"]) == {"200", "400", "403", "404", "503"}
    for path in ["/{levelid}/highscorelist", "/{levelid}/rank/{userid}"]:
        for method in ["get", "head"]:
            assert set(paths[path][method]["responses"]) == {"200", "304", "400", "404", "503"}
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
    """instance against one of the document's schemas (OpenAPI 3.0's are JSON Schema here)."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    jsonschema_rs.Draft7Validator(schema).validate(instance)


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
    for name in ["ScoreList", "PlayerRank", "Problem"]:
        assert_valid(document, name, document["components"]["schemas"][name]["example"])
