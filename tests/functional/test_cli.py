import logging
import os
import socket
import sqlite3
from importlib import metadata

import pytest
from webtest import TestApp

from scoresvc.serving import cli
from scoresvc.settings import SETTINGS, Settings

# A password no message, help text or log line may show.
PASSWORD = "hunter2-not-for-logs"


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
        "--header-timeout SECONDS",
        "(default: 10; env SCORESVC_HEADER_TIMEOUT)",
        "--connections-per-address N",
        "(default: 100; env SCORESVC_CONNECTIONS_PER_ADDRESS)",
        "migrate bring the database to the newest schema",
    ]:
        assert expected in text


def test_help_has_an_option_for_every_setting_with_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["-h"])
    text = " ".join(capsys.readouterr().out.split())
    for declared in SETTINGS:
        for flag in declared.flags:
            assert flag in text
        assert (f"env {declared.variable})" in text) == bool(declared.flags)


def test_help_shows_a_default_with_a_percent_sign_as_it_is(monkeypatch, capsys):
    # argparse formats help with %: a log file's name may hold one.
    monkeypatch.setenv("SCORESVC_LOGFILE", "/var/log/scoresvc-%d.log")
    with pytest.raises(SystemExit) as exited:
        cli.main(["-h"])
    assert exited.value.code == 0
    assert "default: /var/log/scoresvc-%d.log;" in " ".join(capsys.readouterr().out.split())


def test_help_shows_no_password_of_the_database_url(monkeypatch, capsys):
    monkeypatch.setenv("SCORESVC_DATABASE_URL", f"postgresql+psycopg://scores:{PASSWORD}@db/x")
    with pytest.raises(SystemExit):
        cli.main(["-h"])
    out = capsys.readouterr().out
    assert PASSWORD not in out
    assert "postgresql+psycopg://scores:***@db/x" in " ".join(out.split())


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


def test_header_timeout_and_connections_per_address_flags(monkeypatch):
    monkeypatch.setenv("SCORESVC_HEADER_TIMEOUT", "20")
    monkeypatch.setenv("SCORESVC_CONNECTIONS_PER_ADDRESS", "50")
    serve = RecordingServe()
    cli.main(["--header-timeout", "2.5"], serve=serve)
    cli.main(["--connections-per-address", "7"], serve=serve)
    assert [(s.header_timeout, s.connections_per_address) for _app, s in serve.calls] == [
        (2.5, 50),
        (20.0, 7),
    ]


def one_line_error(capsys) -> str:
    """The one line main() wrote to stderr: the whole of it."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--workers", "lots"], "--workers='lots' is not a valid number of workers"),
        (["--workers", "0"], "workers must be at least 1"),
        (["--port", "-1"], "port must be from 0 to 65535"),
        (["--port", "eighty"], "--port='eighty' is not a valid port"),
        (["--threads", "0"], "threads must be at least 1"),
        (["--session-ttl", "0"], "session_ttl must be from 1 to 604800 seconds (7 days), not 0"),
        (["--session-ttl", "1e17"], "session_ttl must be from 1 to 604800 seconds"),
        (["--session-ttl", "604801"], "session_ttl must be from 1 to 604800 seconds"),
        (["--session-ttl", "0.5"], "session_ttl must be from 1 to 604800 seconds"),
        (["--session-ttl", "soon"], "--session-ttl='soon' is not a valid session ttl"),
        (["--header-timeout", "0"], "header_timeout must be from 1 to 3600 seconds, not 0"),
        (["--header-timeout", "nan"], "header_timeout must be from 1 to 3600 seconds"),
        (["--connections-per-address", "0"], "connections_per_address must be at least 1"),
        (["--post-limit", "fast"], "--post-limit: "),
        (["--trusted-proxies", "proxy"], "--trusted-proxies: 'proxy' is neither an IP address"),
        (
            ["--database", "postgresql+psycopg://u:p@h:notaport/db"],
            "the database URL postgresql+psycopg://u:***@h:notaport/db has the port 'notaport'",
        ),
    ],
)
def test_unusable_options_end_with_one_line_and_status_1(argv, reason, capsys):
    assert cli.main(argv, serve=RecordingServe(), supervise=RecordingSupervise()) == 1
    assert one_line_error(capsys).startswith(f"scoresvc: cannot start: {reason}")


@pytest.mark.parametrize(
    ("variable", "raw", "reason"),
    [
        ("SCORESVC_STORE_TOKENS", "perhaps", "SCORESVC_STORE_TOKENS='perhaps' is not a valid"),
        ("SCORESVC_PORT", "abc", "SCORESVC_PORT='abc' is not a valid port"),
        ("SCORESVC_SESSION_TTL", "1e17", "session_ttl must be from 1 to 604800 seconds"),
        ("SCORESVC_HEADER_TIMEOUT", "-1", "header_timeout must be from 1 to 3600 seconds"),
        ("SCORESVC_CONNECTIONS_PER_ADDRESS", "many", "SCORESVC_CONNECTIONS_PER_ADDRESS='many'"),
        ("SCORESVC_DATABASE_URL", "not a url", "the database URL not a url is not one"),
    ],
)
def test_an_unusable_variable_ends_with_one_line_and_status_1(
    monkeypatch, variable, raw, reason, capsys
):
    monkeypatch.setenv(variable, raw)
    assert cli.main([], serve=RecordingServe()) == 1
    assert one_line_error(capsys).startswith(f"scoresvc: cannot start: {reason}")


def test_an_unknown_option_stays_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--colour"], serve=RecordingServe())
    assert exited.value.code == 2
    assert "unrecognized arguments: --colour" in capsys.readouterr().err


def test_an_unreachable_database_ends_with_one_line_and_no_password(capsys):
    url = f"postgresql+psycopg://scores:{PASSWORD}@127.0.0.1:1/scores?connect_timeout=2"
    assert cli.main(["--database", url], serve=RecordingServe()) == 1
    err = one_line_error(capsys)
    assert err.startswith("scoresvc: cannot start: cannot open the database: ")
    assert "(database postgresql+psycopg://scores:***@127.0.0.1:1/scores" in err
    assert PASSWORD not in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_file_that_is_not_a_database_ends_with_one_line(tmp_path, workers, capsys):
    path = tmp_path / "scores.db"
    path.write_bytes(b"not a database, whatever its name says " * 100)
    argv = ["--database", f"sqlite:///{path}", "--workers", workers, "--port", "0"]
    assert cli.main(argv) == 1
    assert one_line_error(capsys) == (
        f"scoresvc: cannot start: file is not a database (database sqlite:///{path})\n"
    )


def test_with_one_process_a_port_in_use_ends_with_one_line(capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert cli.main(["--host", "127.0.0.1", "--port", str(port)]) == 1
    assert one_line_error(capsys) == (
        f"scoresvc: cannot start: cannot listen on http://127.0.0.1:{port}: "
        "Address already in use\n"
    )


@pytest.mark.parametrize(
    "url", ["postgresql://localhost/scores", "not a url", "sqlite:////nonexistent/dir/x.db"]
)
def test_a_database_that_cannot_be_opened_ends_with_a_message(url, capsys):
    assert cli.main(["--database", url], serve=RecordingServe()) == 1
    assert one_line_error(capsys).startswith("scoresvc: cannot start: ")


def test_with_workers_a_database_that_cannot_be_opened_ends_with_a_message_before_any_fork(
    capsys,
):
    # The supervisor opens and migrates the database before it starts a worker.
    argv = ["--workers", "2", "--port", "0", "--database", "sqlite:////nonexistent/dir/x.db"]
    assert cli.main(argv) == 1
    assert one_line_error(capsys).startswith("scoresvc: cannot start: ")


def test_with_workers_a_port_in_use_ends_with_a_message(tmp_path, capsys):
    # A database file: for a memory one, the supervisor logs where it made it for the workers
    # before it binds.
    database = ["--database", f"sqlite:///{tmp_path}/scores.db"]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        argv = ["--workers", "2", "--host", "127.0.0.1", "--port", str(port), *database]
        assert cli.main(argv) == 1
    assert one_line_error(capsys) == (
        f"scoresvc: cannot start: cannot listen on http://127.0.0.1:{port}: "
        "Address already in use\n"
    )


def tables(path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def test_migrate_brings_a_database_to_the_newest_schema_and_serves_nothing(tmp_path):
    path = tmp_path / "scores.db"
    serve, supervise = RecordingServe(), RecordingSupervise()
    assert cli.main(["migrate", "--database", f"sqlite:///{path}"], serve=serve) == 0
    assert "alembic_version" in tables(path)
    assert cli.main(["migrate", "--database", f"sqlite:///{path}"], supervise=supervise) == 0
    assert serve.calls == supervise.calls == []  # and again: nothing left to do


def test_migrate_takes_the_database_from_the_environment_or_before_the_command(
    monkeypatch, tmp_path
):
    migrated = []
    monkeypatch.setenv("SCORESVC_DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    assert cli.main(["migrate"], migrate=migrated.append) == 0
    assert cli.main(["--database", "sqlite:////x/flag.db", "migrate"], migrate=migrated.append) == 0
    assert [settings.database_url for settings in migrated] == [
        f"sqlite:///{tmp_path}/env.db",
        "sqlite:////x/flag.db",
    ]


def test_migrate_refuses_a_database_in_memory(capsys):
    assert cli.main(["migrate"]) == 1
    assert one_line_error(capsys).startswith(
        "scoresvc: cannot migrate: a database in memory has nothing to migrate"
    )


def test_migrate_of_an_unreachable_database_ends_with_one_line_and_no_password(capsys):
    url = f"postgresql+psycopg://owner:{PASSWORD}@127.0.0.1:1/scores?connect_timeout=2"
    assert cli.main(["migrate", "--database", url]) == 1
    err = one_line_error(capsys)
    assert err.startswith("scoresvc: cannot migrate: ") and PASSWORD not in err


def test_waitress_runs_with_room_for_ten_addresses_at_their_cap_and_checks_each_second():
    app = cli.create_app(Settings())
    try:
        settings = Settings(host="127.0.0.1", port=0, header_timeout=3, connections_per_address=7)
        server = cli.waitress_server(app, settings)
        try:
            adjustments = server.adj
            assert adjustments.connection_limit == cli.MIN_CONNECTION_LIMIT  # 70 is fewer
            assert adjustments.channel_timeout == cli.IDLE_CONNECTION_SECONDS
            assert adjustments.cleanup_interval == 1
            assert adjustments.asyncore_use_poll  # select() stops at descriptor 1023
            guard = server.channel_class.__self__
            assert (guard.header_timeout, guard.connections_per_address) == (3, 7)
        finally:
            server.close()
    finally:
        app.close()


def test_the_connection_limit_grows_with_the_cap_and_raises_the_open_file_limit(monkeypatch):
    limits = {"soft": 1024, "hard": 65536}
    monkeypatch.setattr(cli.resource, "getrlimit", lambda _: (limits["soft"], limits["hard"]))
    monkeypatch.setattr(
        cli.resource, "setrlimit", lambda _, both: limits.update(soft=both[0], hard=both[1])
    )
    assert cli.connection_limit(100) == 1000
    assert limits["soft"] == 1000 + cli.FILES_BESIDES_CONNECTIONS
    assert cli.connection_limit(500) == 5000
    assert limits == {"soft": 5000 + cli.FILES_BESIDES_CONNECTIONS, "hard": 65536}


def test_a_connection_limit_the_open_files_cannot_hold_is_cut_to_fit_with_a_warning(
    monkeypatch, caplog
):
    monkeypatch.setattr(cli.resource, "getrlimit", lambda _: (1024, 1024))
    monkeypatch.setattr(cli.resource, "setrlimit", lambda *_: None)
    assert cli.connection_limit(100) == 1024 - cli.FILES_BESIDES_CONNECTIONS
    assert "the open-file limit (1024) leaves room for 960 connections" in caplog.text


def test_version_prints_the_installed_packages_version(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"], serve=RecordingServe())
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"scoresvc {metadata.version('scoresvc')}\n"
