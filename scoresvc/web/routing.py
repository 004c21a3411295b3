"""A small router: Django-style path patterns compiled once into anchored regexes."""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from scoresvc.numbers import parse_uint31
from scoresvc.web.responses import MethodNotAllowed, NotFound

_PLACEHOLDER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


@dataclass(frozen=True)
class Converter:
    """How one kind of path segment is matched (regex) and turned into a value."""

    regex: str
    to_python: Callable[[str, str], Any]


def _keep_text(text: str, name: str) -> str:
    return text


CONVERTERS = {
    # Django's int, narrowed to the contract's 31-bit numbers. It matches any segment, even an
    # empty one, so that a malformed number in a known path is a 400 (the contract), not a 404.
    "int": Converter(r"[^/]*", parse_uint31),
    "str": Converter(r"[^/]+", _keep_text),
    # Django's path: the rest of the path, slashes and all.
    "path": Converter(r".*", _keep_text),
}


@dataclass(frozen=True)
class Route:
    """A path pattern such as '<int:levelid>/score', the methods it answers and its view.

    A reserved route (reserved(pattern)) has no view: its paths are unknown (404, or 405 where
    an earlier route takes the path under another method), and no later route may take them.
    """

    pattern: str
    view: Callable[..., Any] | None
    methods: tuple[str, ...] = ("GET",)
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    converters: dict[str, Converter] = field(init=False, repr=False, compare=False)
    # The pattern as metrics show it, '/<levelid>/score': never a client's own path.
    label: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex, converters = _compile(self.pattern)
        object.__setattr__(self, "regex", regex)
        object.__setattr__(self, "converters", converters)
        label = _PLACEHOLDER.sub(lambda found: f"<{found['name']}>", self.pattern)
        object.__setattr__(self, "label", f"/{label}")

    @property
    def reserved(self) -> bool:
        """Whether the route only keeps its paths from later routes."""
        return self.view is None

    @property
    def allowed_methods(self) -> tuple[str, ...]:
        """The methods to list in an Allow header: HEAD goes wherever GET does."""
        if "GET" in self.methods and "HEAD" not in self.methods:
            return (*self.methods, "HEAD")
        return self.methods


def reserved(pattern: str) -> Route:
    """A route that answers nothing on its paths and keeps every later route from them."""
    return Route(pattern, None, methods=())


def _compile(pattern: str) -> tuple[re.Pattern[str], dict[str, Converter]]:
    source, converters = _regex_source(pattern)
    return re.compile(source), converters


def _regex_source(pattern: str, group_prefix: str = "") -> tuple[str, dict[str, Converter]]:
    parts, converters, position = ["/"], {}, 0
    for placeholder in _PLACEHOLDER.finditer(pattern):
        converter_name = placeholder["converter"] or "str"
        if converter_name not in CONVERTERS:
            raise ValueError(f"unknown converter {converter_name!r} in {pattern!r}")
        converter = converters[placeholder["name"]] = CONVERTERS[converter_name]
        parts.append(re.escape(pattern[position : placeholder.start()]))
        parts.append(f"(?P<{group_prefix}{placeholder['name']}>{converter.regex})")
        position = placeholder.end()
    parts.append(re.escape(pattern[position:]))
    return "".join(parts) + r"\Z", converters


class Router:
    """Finds the view for a method and path, or raises NotFound or MethodNotAllowed."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        # Every pattern in one regex, each in a group named after its route: one match call
        # finds the first route whose pattern fits, instead of one call per route tried.
        alternatives, self._by_group = [], {}
        for number, route in enumerate(self.routes):
            group = f"_{number}"
            source, converters = _regex_source(route.pattern, group_prefix=f"{group}_")
            alternatives.append(f"(?P<{group}>{source})")
            arguments = tuple(
                (f"{group}_{name}", name, c.to_python) for name, c in converters.items()
            )
            self._by_group[group] = (route, arguments)
        self._any_route = re.compile("|".join(alternatives))

    def match(self, method: str, path: str) -> tuple[Callable[..., Any], dict[str, Any]]:
        """Return (view, keyword arguments) for the first route whose pattern matches path."""
        route, kwargs = self.resolve(method, path)
        assert route.view is not None  # resolve() never answers a reserved route
        return route.view, kwargs

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, Any]]:
        """Return (route, keyword arguments for its view), as match() finds them."""
        lookup_method = "GET" if method == "HEAD" else method
        found = self._any_route.match(path)
        if found is None:
            raise NotFound("not found")
        # The outer group closes last: lastgroup names the first route whose pattern matched.
        route, arguments = self._by_group[cast(str, found.lastgroup)]
        if route.reserved:
            raise NotFound("not found")  # no earlier route matched the path, at any method
        if lookup_method in route.methods:
            return route, {name: convert(found[group], name) for group, name, convert in arguments}
        return self._match_route_by_route(lookup_method, path)

    def _match_route_by_route(self, lookup_method: str, path: str) -> tuple[Route, dict[str, Any]]:
        # A later route may take the method; else 405, with every method the path allows.
        allowed: list[str] = []
        for route in self.routes:
            found = route.regex.match(path)
            if found is None:
                continue
            if route.reserved:
                break
            if lookup_method not in route.methods:
                allowed.extend(m for m in route.allowed_methods if m not in allowed)
                continue
            kwargs = {
                name: route.converters[name].to_python(text, name)
                for name, text in found.groupdict().items()
            }
            return route, kwargs
        if allowed:
            raise MethodNotAllowed(tuple(allowed))
        raise NotFound("not found")
