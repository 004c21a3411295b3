"""Content negotiation: whether a request's Accept header prefers JSON to plain text."""

import re
from functools import lru_cache
from typing import NamedTuple


class _MediaType(NamedTuple):
    kind: str
    subtype: str
    parameters: frozenset[tuple[str, str]]


# The two representations the service offers.
_TEXT = _MediaType("text", "plain", frozenset({("charset", "utf-8")}))
_JSON = _MediaType("application", "json", frozenset())

# RFC 9110 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")

# Clients send a handful of distinct Accept headers, each on every request: the answer for
# each is kept. Longer ones are parsed every time, so that a hostile client cannot fill the
# cache with megabytes of headers.
_CACHED_HEADERS = 256
_CACHED_LENGTH = 256


def prefers_json(accept: str | None) -> bool:
    """Whether an Accept header weighs application/json above text/plain (ties: text)."""
    if not accept or accept == "*/*":
        return False  # no preference: the common cases, answered without parsing
    if len(accept) > _CACHED_LENGTH:
        return _prefers_json(accept)
    return _cached_prefers_json(accept)


def _prefers_json(accept: str) -> bool:
    text_weight, json_weight = _weights(accept.lower())
    return json_weight > text_weight


_cached_prefers_json = lru_cache(maxsize=_CACHED_HEADERS)(_prefers_json)


def _weights(accept: str) -> tuple[float, float]:
    """The weights of text/plain and of application/json: each its most specific range's q.

    An element that is not a media range with a valid weight is ignored (RFC 9110 5.6.1 lets
    a recipient ignore what it cannot parse); a type no range matches weighs 0.
    """
    best = {_TEXT: (-1, 0.0), _JSON: (-1, 0.0)}  # offer: (specificity, q) of its best match
    for element in accept.split(","):
        media_range, *parameter_texts = element.split(";")
        kind, slash, subtype = media_range.strip().partition("/")
        if not slash or not kind or not subtype or (kind == "*" and subtype != "*"):
            continue
        parameters, weight = _parameters(parameter_texts)
        if weight is None:
            continue
        for offer in (_TEXT, _JSON):
            specificity = _specificity(offer, kind, subtype, parameters)
            if specificity > best[offer][0]:
                best[offer] = (specificity, weight)
    return best[_TEXT][1], best[_JSON][1]


def _parameters(texts: list[str]) -> tuple[dict[str, str], float | None]:
    # The media range's parameters, and its weight (None: malformed). The weight ends them.
    parameters: dict[str, str] = {}
    for text in texts:
        if not text.strip():
            continue  # RFC 9110 5.6.6 allows empty parameters: ";;"
        name, _, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if name == "q":
            return parameters, float(value) if _QVALUE.match(value) else None
        parameters[name] = value.strip('"')
    return parameters, 1.0


def _specificity(offer: _MediaType, kind: str, subtype: str, parameters: dict[str, str]) -> int:
    # RFC 9110 12.5.1: type/subtype;parameter over type/subtype over type/* over */*; -1 when
    # the range does not match the offer at all.
    if kind == "*":
        level = 0
    elif kind != offer.kind:
        return -1
    elif subtype == "*":
        level = 1
    elif subtype == offer.subtype:
        level = 2
    else:
        return -1
    if not offer.parameters.issuperset(parameters.items()):
        return -1
    return 2 * level + bool(parameters)
