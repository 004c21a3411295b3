"""The library internals scoresvc relies on, checked against the releases installed.

scoresvc/serving/httpchannel.py subclasses waitress's channel, request parser and WSGI task and
overrides their internals; scoresvc/metrics.py swaps prometheus_client's value class. Neither
library promises to keep those, so setup.cfg bounds each to the minor version tested. A release
that renames a method, changes a signature or stops calling an overridden method would not fail
loudly on its own: an override of a method nobody calls any more is silently dead code. These
tests fail instead, naming what to re-check. Run them before raising a bound in setup.cfg.
"""

import importlib.metadata
import inspect

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    metrics,
    multiprocess,
    values,
)
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError, TransferEncodingNotImplemented
from waitress.server import BaseWSGIServer
from waitress.task import Task, WSGITask
from waitress.utilities import BadRequest

from scoresvc.serving import httpchannel
from scoresvc.serving.httpchannel import Channel, OneWriteTask, RequestParser

WAITRESS = f"waitress {importlib.metadata.version('waitress')}"
PROMETHEUS = f"prometheus_client {importlib.metadata.version('prometheus_client')}"
RECHECK_WAITRESS = (
    "re-check scoresvc/serving/httpchannel.py against this release before raising setup.cfg's "
    "bound on waitress"
)
RECHECK_PROMETHEUS = (
    "re-check scoresvc/metrics.py (_use_multiprocess_values, _counting) against this release "
    "before raising setup.cfg's bound on prometheus_client"
)

# Each method scoresvc overrides, by its class and the waitress class whose method it replaces.
OVERRIDES = [
    (RequestParser, HTTPRequestParser, "parse_header"),
    (OneWriteTask, WSGITask, "build_response_header"),
    (OneWriteTask, WSGITask, "set_close_on_finish"),
    (OneWriteTask, WSGITask, "write"),
]
# What the slow-client guard of httpchannel.py builds on: the methods a Channel or RequestParser
# extends (by their waitress class) and the server's maintenance pass it runs after.
EXTENDED = [
    (HTTPChannel, "__init__", ["self", "server", "sock", "addr", "adj", "map"]),
    (HTTPChannel, "received", ["self", "data"]),
    (HTTPChannel, "del_channel", ["self", "map"]),
    (HTTPRequestParser, "__init__", ["self", "adj"]),
    (BaseWSGIServer, "maintenance", ["self", "now"]),
]
# Attributes the overrides read or set on waitress's objects, by the class that must have them
# (as a class attribute, a property, or set as self.<name> by a method of the class or its bases).
ATTRIBUTES = [
    (HTTPRequestParser, "chunked"),
    (HTTPRequestParser, "headers"),
    (WSGITask, "channel"),
    (WSGITask, "request"),
    (WSGITask, "version"),
    (WSGITask, "has_body"),
    (WSGITask, "complete"),
    (WSGITask, "wrote_header"),
    (WSGITask, "chunked_response"),
    (WSGITask, "content_length"),
    (WSGITask, "content_bytes_written"),
    (WSGITask, "close_on_finish"),
    (HTTPChannel, "parser_class"),
    (HTTPChannel, "task_class"),
    (HTTPChannel, "request"),
    (HTTPChannel, "will_close"),
    (BaseWSGIServer, "channel_class"),
    (BaseWSGIServer, "active_channels"),
]


def _parameters(function) -> list[tuple[str, object]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def _sets_or_has(cls: type, name: str) -> bool:
    if any(name in vars(klass) for klass in cls.__mro__):
        return True
    sources = (inspect.getsource(klass) for klass in cls.__mro__ if klass is not object)
    return any(f"self.{name} =" in source for source in sources)


@pytest.mark.parametrize(("subclass", "base", "name"), OVERRIDES)
def test_each_method_scoresvc_overrides_is_still_waitresss_with_the_same_parameters(
    subclass, base, name
):
    where = f"{WAITRESS}: {base.__name__}.{name}, which httpchannel.{subclass.__name__} overrides,"
    assert callable(getattr(base, name, None)), f"{where} is gone; {RECHECK_WAITRESS}"
    assert _parameters(getattr(base, name)) == _parameters(vars(subclass)[name]), (
        f"{where} now takes {inspect.signature(getattr(base, name))}; {RECHECK_WAITRESS}"
    )


@pytest.mark.parametrize(("cls", "name", "parameters"), EXTENDED)
def test_each_method_the_slow_client_guard_extends_takes_what_it_passes(cls, name, parameters):
    method = getattr(cls, name, None)
    assert callable(method), f"{WAITRESS}: {cls.__name__}.{name} is gone; {RECHECK_WAITRESS}"
    assert [p for p, _ in _parameters(method)] == parameters, (
        f"{WAITRESS}: {cls.__name__}.{name} now takes {inspect.signature(method)}; "
        f"{RECHECK_WAITRESS}"
    )


def test_every_override_in_httpchannel_matches_the_method_it_replaces():
    # Also what OVERRIDES does not list yet: any method of a waitress class that a class of
    # httpchannel.py defines again must keep waitress's parameters.
    for subclass in vars(httpchannel).values():
        if not (isinstance(subclass, type) and subclass.__module__ == httpchannel.__name__):
            continue
        for name, member in vars(subclass).items():
            # The method replaced is the nearest base's of that name.
            base = next((b for b in subclass.__mro__[1:] if name in vars(b)), None)
            if base is None or not base.__module__.startswith("waitress."):
                continue
            replaced = vars(base)[name]
            if inspect.isfunction(member) and inspect.isfunction(replaced):
                assert _parameters(member) == _parameters(replaced), (
                    f"{WAITRESS}: {base.__name__}.{name} now takes "
                    f"{inspect.signature(replaced)}, which httpchannel.{subclass.__name__} "
                    f"overrides with {inspect.signature(member)}; {RECHECK_WAITRESS}"
                )


@pytest.mark.parametrize(("cls", "name"), ATTRIBUTES)
def test_each_attribute_the_overrides_use_is_still_there(cls, name):
    assert _sets_or_has(cls, name), (
        f"{WAITRESS}: {cls.__name__} no longer has {name!r}, which httpchannel.py reads or "
        f"sets; {RECHECK_WAITRESS}"
    )


def test_waitress_still_calls_what_the_overrides_replace():
    # OneWriteTask keeps a 304's connection open by declining the close that waitress's header
    # building asks for, and sends headers and body in one write_soon(); RequestParser turns the
    # 501 of an unknown transfer coding into a 400.
    calls = [
        (Task.build_response_header, "self.set_close_on_finish()"),
        (Task.write, "self.build_response_header()"),
        (Task.write, "channel.write_soon("),
        (HTTPRequestParser.parse_header, "raise TransferEncodingNotImplemented("),
        # The guard stands in for channel_class, called so for each connection accepted, and
        # runs after maintenance(), which the main loop calls through the attribute.
        (BaseWSGIServer.handle_accept, "self.channel_class(self, conn, addr, self.adj, map="),
        (BaseWSGIServer.readable, "self.maintenance(now)"),
    ]
    for method, call in calls:
        assert call in inspect.getsource(method), (
            f"{WAITRESS}: {method.__qualname__} no longer does {call}; {RECHECK_WAITRESS}"
        )
    assert _parameters(HTTPChannel.write_soon) == [
        ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("data", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    ], f"{WAITRESS}: HTTPChannel.write_soon takes other parameters; {RECHECK_WAITRESS}"
    assert issubclass(TransferEncodingNotImplemented, Exception)
    assert issubclass(ParsingError, Exception)


@pytest.mark.parametrize(
    "head",
    [
        b"POST /1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /1/score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n",
    ],
)
def test_the_parser_still_answers_an_unreadable_body_length_with_400(head):
    parser = RequestParser(Adjustments())
    parser.received(head)
    assert isinstance(parser.error, BadRequest), (
        f"{WAITRESS}: RequestParser gave {parser.error!r} for {head!r}; {RECHECK_WAITRESS}"
    )


def test_the_channel_still_uses_scoresvcs_parser_and_task():
    assert Channel.parser_class is RequestParser
    assert Channel.task_class is OneWriteTask
    assert issubclass(Channel, HTTPChannel), f"{WAITRESS}; {RECHECK_WAITRESS}"


def test_prometheus_client_still_chooses_its_value_class_as_scoresvc_swaps_it():
    assert hasattr(values, "ValueClass"), (
        f"{PROMETHEUS}: no values.ValueClass; {RECHECK_PROMETHEUS}"
    )
    assert callable(getattr(values, "MultiProcessValue", None)), (
        f"{PROMETHEUS}: no values.MultiProcessValue(); {RECHECK_PROMETHEUS}"
    )
    # scoresvc tells whether the swap is made by this flag of the class.
    assert getattr(values.MutexValue, "_multiprocess", None) is False, (
        f"{PROMETHEUS}: the in-memory value class has no _multiprocess = False; "
        f"{RECHECK_PROMETHEUS}"
    )
    multiprocess_class = values.MultiProcessValue(lambda: 0)
    assert getattr(multiprocess_class, "_multiprocess", None) is True, (
        f"{PROMETHEUS}: MultiProcessValue()'s class has no _multiprocess = True; "
        f"{RECHECK_PROMETHEUS}"
    )
    # A series made after the swap uses the new class only if the metric classes look the
    # module attribute up when they make each value (not a name imported once).
    source = inspect.getsource(metrics)
    assert source.count("values.ValueClass(") >= 4, (
        f"{PROMETHEUS}: the metric classes no longer make their values with "
        f"values.ValueClass(...); {RECHECK_PROMETHEUS}"
    )


def test_prometheus_clients_multiprocess_functions_take_what_scoresvc_passes():
    collector = inspect.signature(multiprocess.MultiProcessCollector)
    assert list(collector.parameters)[:2] == ["registry", "path"], (
        f"{PROMETHEUS}: MultiProcessCollector{collector}; {RECHECK_PROMETHEUS}"
    )
    dead = inspect.signature(multiprocess.mark_process_dead)
    assert list(dead.parameters)[:2] == ["pid", "path"], (
        f"{PROMETHEUS}: mark_process_dead{dead}; {RECHECK_PROMETHEUS}"
    )
    assert "livesum" in Gauge._MULTIPROC_MODES, (
        f"{PROMETHEUS}: no 'livesum' gauge mode; {RECHECK_PROMETHEUS}"
    )


def test_prometheus_clients_series_still_keep_the_values_scoresvc_adds_to():
    # Metrics._counting() adds an answer to a counter child's value, a histogram child's sum
    # and the bucket its latency falls in, in memory under a lock of its own.
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["route"], registry=registry).labels("/")
    histogram = Histogram("h", "h", ["route"], buckets=(0.5, 1.0), registry=registry).labels("/")
    assert isinstance(getattr(counter, "_value", None), values.MutexValue), (
        f"{PROMETHEUS}: a counter child keeps no _value; {RECHECK_PROMETHEUS}"
    )
    assert isinstance(getattr(histogram, "_sum", None), values.MutexValue), (
        f"{PROMETHEUS}: a histogram child keeps no _sum; {RECHECK_PROMETHEUS}"
    )
    assert list(getattr(histogram, "_upper_bounds", ())) == [0.5, 1.0, float("inf")], (
        f"{PROMETHEUS}: a histogram's _upper_bounds are not its bounds and +Inf; "
        f"{RECHECK_PROMETHEUS}"
    )
    buckets = getattr(histogram, "_buckets", [])
    assert len(buckets) == 3 and all(type(b) is values.MutexValue for b in buckets), (
        f"{PROMETHEUS}: a histogram child keeps no value per bucket in _buckets; "
        f"{RECHECK_PROMETHEUS}"
    )
    counter._value._value += 1.0
    histogram._buckets[1]._value += 1.0
    histogram._sum._value += 0.75
    exposition = generate_latest(registry).decode()
    assert 'c_total{route="/"} 1.0' in exposition, (
        f"{PROMETHEUS}: a MutexValue's _value is not what it exposes; {RECHECK_PROMETHEUS}"
    )
    assert 'h_bucket{le="1.0",route="/"} 1.0' in exposition
    assert 'h_sum{route="/"} 0.75' in exposition
