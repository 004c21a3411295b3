import logging
import os
import socket

import pytest
from webtest import TestApp

from scoresvc.serving import cli
from scoresvc.settings import Settings


class RecordingServe:
    """Stands in for waitress: records what it was asked to serve, logs in once, and returns."""

    def __init__(self) -> None:
        self.calls = []
        self.login_key = None

    def __call__(self, app, settings) -> None:
        self.calls.append((app, settings))
        self.login_key = TestApp(app, lint=True).get("/1/login").text


class RecordingSupervise:
    """Stands in for the supervisor of worker processes: records the settings, starts nothing."""

    def __init__(self) -> None:
        self.calls = []

    def __call__(self, settings) -> int:
        self.calls.append(settings)
        return 0


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in [n for n in os.environ if n.startswith("SCORESVC_")]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def restore_logging():
    # main() sets up the service's logging; later tests must find the loggers as they were.
    loggers = [logging.getLogger(name) for name in ("scoresvc", "waitress")]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def test_help_documents_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["-h"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in [
        "-p PORT, --port PORT",
        "default: 8080",
        "--host",
        "default: localhost",
        "--threads",
        "default: 4",
        "--logfile",
        "--store-tokens, --store_tokens",
        "--database URL",
        "sqlite://, in memory",
        "--session-ttl SECONDS",
        "default: 600",
        "--workers N, --max-proc N, --max_proc N",
        "auto: one per CPU (default: 1; env SCORESVC_WORKERS)",
    ]:
        assert expected in text


def test_help_shows_defaults_taken_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("SCORESVC_PORT", "9123")
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "default: 9123" in capsys.readouterr().out


def test_flags_override_environment_variables(monkeypatch):
    monkeypatch.setenv("SCORESVC_PORT", "9000")
    monkeypatch.setenv("SCORESVC_SESSION_TTL", "60")
    serve = RecordingServe()
    assert cli.main(["-p", "9001", "--threads", "2", "--host", "0.0.0.0"], serve=serve) == 0
    ((_app, settings),) = serve.calls
    assert (settings.port, settings.threads, settings.host) == (9001, 2, "0.0.0.0")
    assert settings.session_ttl == 60


@pytest.mark.parametrize("flag", ["--store-tokens", "--store_tokens"])
def test_both_spellings_of_store_tokens_switch_to_stored_keys(flag):
    serve = RecordingServe()
    cli.main([flag], serve=serve)
    ((_app, settings),) = serve.calls
    assert settings.store_tokens is True
    assert len(serve.login_key) == 43  # a stored key; signed ones are 80 characters


def test_database_and_session_ttl_flags(tmp_path):
    serve = RecordingServe()
    url = f"sqlite:///{tmp_path}/scores.db"
    cli.main(["--database", url, "--session-ttl", "30"], serve=serve)
    ((_app, settings),) = serve.calls
    assert settings == Settings(database_url=url, session_ttl=30.0)
    assert (tmp_path / "scores.db").exists()


@pytest.mark.parametrize("flag", ["--workers", "--max-proc", "--max_proc"])
def test_every_spelling_of_workers_hands_the_service_to_the_supervisor(flag):
    serve, supervise = RecordingServe(), RecordingSupervise()
    assert cli.main([flag, "3"], serve=serve, supervise=supervise) == 0
    assert [settings.workers for settings in supervise.calls] == [3]
    assert serve.calls == []


def test_auto_workers_are_one_per_cpu():
    serve, supervise = RecordingServe(), RecordingSupervise()
    cli.main(["--workers", "auto"], serve=serve, supervise=supervise)
    # One CPU: one worker, served in this process; more: as many workers, supervised.
    (settings,) = supervise.calls or [settings for _app, settings in serve.calls]
    assert settings.workers == (os.cpu_count() or 1)


def test_workers_come_from_the_environment_and_the_flag_wins(monkeypatch):
    monkeypatch.setenv("SCORESVC_WORKERS", "4")
    supervise = RecordingSupervise()
    cli.main([], serve=RecordingServe(), supervise=supervise)
    assert [settings.workers for settings in supervise.calls] == [4]
    serve = RecordingServe()
    cli.main(["--workers", "1"], serve=serve, supervise=supervise)
    assert len(serve.calls) == 1  # one worker: served in this process, no supervisor
    assert len(supervise.calls) == 1


def test_workers_that_are_not_a_number_end_with_a_usage_message(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--workers", "lots"], supervise=RecordingSupervise())
    assert exited.value.code == 2
    assert "'lots' is neither a whole number nor auto" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--port", "-1"], ["--session-ttl", "0"], ["--threads", "0"], ["--workers", "0"]]
)
def test_unusable_options_end_with_a_message_not_a_trace(argv, capsys):
    assert cli.main(argv, serve=RecordingServe()) == 2
    assert capsys.readouterr().err.startswith("scoresvc: ")


def test_an_unusable_variable_ends_with_a_message(monkeypatch, capsys):
    monkeypatch.setenv("SCORESVC_STORE_TOKENS", "perhaps")
    assert cli.main([], serve=RecordingServe()) == 2
    assert "SCORESVC_STORE_TOKENS" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url", ["postgresql://localhost/scores", "not a url", "sqlite:////nonexistent/dir/x.db"]
)
def test_a_database_that_cannot_be_opened_ends_with_a_message(url, capsys):
    assert cli.main(["--database", url], serve=RecordingServe()) == 1
    assert "cannot start" in capsys.readouterr().err


def test_with_workers_a_database_that_cannot_be_opened_ends_with_a_message_before_any_fork(
    capsys,
):
    # The supervisor opens and migrates the database before it starts a worker.
    argv = ["--workers", "2", "--port", "0", "--database", "sqlite:////nonexistent/dir/x.db"]
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.startswith("scoresvc: cannot start: ")


def test_with_workers_a_port_in_use_ends_with_a_message(capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert cli.main(["--workers", "2", "--host", "127.0.0.1", "--port", str(port)]) == 1
    assert "cannot start: " in capsys.readouterr().err
