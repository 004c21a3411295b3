"""The published OpenAPI document: served, valid OpenAPI 3, and in step with the route list."""

import re
from importlib.resources import files
from unittest.mock import Mock

import pytest
import schemathesis
import yaml

from scoresvc.application import build_routes
from scoresvc.numbers import MAX_UINT31

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
    routed = {
        openapi_path(route.pattern): set(route.allowed_methods) for route in build_routes(Mock())
    }
    assert described == routed


def test_every_described_operation_lists_its_error_statuses(document):
    paths = document["paths"]
    assert set(paths["/{levelid}/score"]["post"]["responses"]) == {
        "200", "400", "401", "404", "413", "503",
    }  # fmt: skip
    for path in ["/{userid}/login", "/{userid}/", "/{levelid}/highscorelist"]:
        for method in ["get", "head"]:
            assert set(paths[path][method]["responses"]) == {"200", "400", "404", "503"}
    assert set(paths["/healthz"]["get"]["responses"]) == {"200", "503"}


def test_numbers_are_ascii_digits_up_to_the_maximum_with_leading_zeros(document):
    number = document["components"]["schemas"]["Number"]
    pattern = re.compile(number["pattern"].removesuffix("$") + r"\Z")
    assert number["x-maximum"] == MAX_UINT31
    for accepted in ["0", "7", "0042", "2147483647", "0002147483647", "1999999999"]:
        assert pattern.match(accepted), accepted
    for refused in ["", "2147483648", "9999999999", "-1", "+5", "1e3", "0x10", "\u0663", "5\n"]:
        assert not pattern.match(refused), refused
