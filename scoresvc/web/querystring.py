"""Query-string handling: reading one parameter's values, and hiding them in logs."""

from urllib.parse import unquote_plus


def parameter_values(query_string: str, name: str) -> list[str]:
    """Every value given for name in a WSGI QUERY_STRING, decoded, in order."""
    values = []
    for pair in query_string.split("&"):
        key, _, value = pair.partition("=")
        if _is_name(key, name):
            values.append(_decode(value))
    return values


def redact(query_string: str, name: str, mask: str = "[redacted]") -> str:
    """query_string with every value of the parameter name replaced by mask."""
    pairs = []
    for pair in query_string.split("&"):
        key, equals, value = pair.partition("=")
        if value and _is_name(key, name):
            pair = f"{key}{equals}{mask}"
        pairs.append(pair)
    return "&".join(pairs)


def _is_name(key: str, name: str) -> bool:
    # Only an escaped key (%xx or +) needs decoding, and most keys are plain.
    return key == name or (("%" in key or "+" in key) and _decode(key) == name)


def _decode(text: str) -> str:
    # WSGI hands over the raw bytes as latin-1 text; percent-escapes decode as UTF-8.
    return unquote_plus(text.encode("latin-1", "replace").decode("utf-8", "replace"))
