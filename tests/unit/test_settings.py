import os
import re
from dataclasses import fields

import pytest

from scoresvc.settings import SETTINGS, Settings, SettingsError, parse_setting, shown_url

PASSWORD = "hunter2-not-for-logs"


def test_defaults_are_an_in_memory_database_signed_keys_and_ten_minutes():
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite://"
    assert settings.session_ttl == 600
    assert settings.store_tokens is False
    assert settings.secret is None
    assert (settings.host, settings.port) == ("localhost", 8080)
    assert settings.workers == 1
    assert (settings.header_timeout, settings.connections_per_address) == (10, 100)


def test_every_setting_comes_from_its_variable():
    settings = Settings.from_env(
        {
            "SCORESVC_DATABASE_URL": "sqlite:////tmp/x.db",
            "SCORESVC_SESSION_TTL": "30.5",
            "SCORESVC_STORE_TOKENS": "yes",
            "SCORESVC_SECRET": "s" * 32,
            "SCORESVC_SQLITE_SYNCHRONOUS": "full",
            "SCORESVC_HOST": "0.0.0.0",
            "SCORESVC_PORT": "9000",
            "SCORESVC_THREADS": "8",
            "SCORESVC_LOGFILE": "/tmp/scoresvc.log",
            "SCORESVC_WORKERS": "3",
            "SCORESVC_HEADER_TIMEOUT": "2.5",
            "SCORESVC_CONNECTIONS_PER_ADDRESS": "20",
        }
    )
    assert settings == Settings(
        database_url="sqlite:////tmp/x.db",
        session_ttl=30.5,
        store_tokens=True,
        secret="s" * 32,
        sqlite_synchronous="full",
        host="0.0.0.0",
        port=9000,
        threads=8,
        logfile="/tmp/scoresvc.log",
        workers=3,
        header_timeout=2.5,
        connections_per_address=20,
    )


def test_overrides_win_over_variables_and_none_means_not_given():
    settings = Settings.from_env({"SCORESVC_PORT": "9000"}, port=9001, host=None)
    assert settings.port == 9001
    assert settings.host == "localhost"


def test_an_empty_variable_counts_as_unset():
    settings = Settings.from_env({"SCORESVC_SECRET": "", "SCORESVC_PORT": " "})
    assert settings.secret is None
    assert settings.port == 8080


@pytest.mark.parametrize("raw", ["auto", "AUTO", " auto "])
def test_auto_workers_are_one_per_cpu_counted_when_read(raw):
    assert Settings.from_env({"SCORESVC_WORKERS": raw}).workers == (os.cpu_count() or 1)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on"])
def test_true_spellings(raw):
    assert Settings.from_env({"SCORESVC_STORE_TOKENS": raw}).store_tokens is True


@pytest.mark.parametrize("raw", ["0", "false", "no", "off"])
def test_false_spellings(raw):
    assert Settings.from_env({"SCORESVC_STORE_TOKENS": raw}).store_tokens is False


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("SCORESVC_STORE_TOKENS", "maybe", "SCORESVC_STORE_TOKENS"),
        ("SCORESVC_PORT", "eighty", "SCORESVC_PORT"),
        ("SCORESVC_PORT", "70000", "port"),
        ("SCORESVC_THREADS", "0", "threads"),
        ("SCORESVC_SESSION_TTL", "0", "session_ttl"),
        ("SCORESVC_SESSION_TTL", "-5", "session_ttl"),
        ("SCORESVC_SESSION_TTL", "nan", "session_ttl"),
        ("SCORESVC_SESSION_TTL", "inf", "session_ttl"),
        ("SCORESVC_SESSION_TTL", "0.999", r"from 1 to 604800 seconds \(7 days\), not 0.999"),
        ("SCORESVC_SESSION_TTL", "604800.5", "session_ttl must be from 1 to 604800 seconds"),
        ("SCORESVC_SESSION_TTL", "1e17", "session_ttl must be from 1 to 604800 seconds"),
        ("SCORESVC_HEADER_TIMEOUT", "0.5", "header_timeout must be from 1 to 3600 seconds"),
        ("SCORESVC_HEADER_TIMEOUT", "3601", "header_timeout must be from 1 to 3600 seconds"),
        ("SCORESVC_HEADER_TIMEOUT", "inf", "header_timeout"),
        ("SCORESVC_HEADER_TIMEOUT", "soon", "SCORESVC_HEADER_TIMEOUT='soon' is not a valid"),
        ("SCORESVC_CONNECTIONS_PER_ADDRESS", "0", "connections_per_address must be at least 1"),
        ("SCORESVC_CONNECTIONS_PER_ADDRESS", "1.5", "SCORESVC_CONNECTIONS_PER_ADDRESS='1.5'"),
        ("SCORESVC_SECRET", "short", "16 bytes"),
        ("SCORESVC_SQLITE_SYNCHRONOUS", "sometimes", "sqlite_synchronous"),
        ("SCORESVC_WORKERS", "0", "workers must be at least 1"),
        ("SCORESVC_WORKERS", "many", "SCORESVC_WORKERS='many' is not a valid number of workers"),
        ("SCORESVC_WORKERS", "2.5", "SCORESVC_WORKERS"),
    ],
)
def test_unusable_values_are_refused_with_the_setting_named(variable, raw, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({variable: raw})


@pytest.mark.parametrize(("name", "raw"), [("session_ttl", "1"), ("session_ttl", "604800")])
def test_the_bounds_themselves_are_allowed(name, raw):
    assert getattr(Settings.from_env({f"SCORESVC_{name.upper()}": raw}), name) == float(raw)


def test_text_given_by_a_flag_is_read_as_the_variable_and_named_by_the_flag():
    assert parse_setting("session_ttl", "30", source="--session-ttl") == 30.0
    with pytest.raises(SettingsError, match=r"^--port='http' is not a valid port$"):
        parse_setting("port", "http", source="--port")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql+psycopg://scores:{PASSWORD}@db:5432/x",
            "postgresql+psycopg://scores:***@db:5432/x",
        ),
        (
            f"postgresql://scores:{PASSWORD}@db/x?sslmode=require",
            "postgresql://scores:***@db/x?sslmode=require",
        ),
        ("postgresql://scores@db/x", "postgresql://scores@db/x"),
        ("sqlite:////var/lib/scoresvc/scores.db", "sqlite:////var/lib/scoresvc/scores.db"),
        # An unencoded @ in the password, and URLs SQLAlchemy cannot read: still hidden.
        (f"postgresql://scores:a@{PASSWORD}@db/x", "postgresql://scores:***@db/x"),
        (f"postgresql://scores:{PASSWORD}@db:port/x", "postgresql://scores:***@db:port/x"),
        (f"scores:{PASSWORD}@db/x", "scores:***@db/x"),
    ],
)
def test_a_database_url_is_shown_without_its_password(url, shown):
    assert shown_url(url) == shown


def test_the_repr_shows_no_password_no_token_and_no_secret():
    settings = Settings(
        database_url=f"postgresql+psycopg://scores:{PASSWORD}@db/x",
        admin_token="t" * 40,
        writer_token="w" * 40,
        secret="s" * 32,
    )
    assert PASSWORD not in repr(settings)
    assert all(value * 32 not in repr(settings) for value in "tws")
    assert "database_url='postgresql+psycopg://scores:***@db/x'" in repr(settings)
    assert repr(Settings()).startswith("Settings(database_url='sqlite://', session_ttl=600.0,")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            f"postgresql+psycopg://u:{PASSWORD}@h:notaport/db",
            "the database URL postgresql+psycopg://u:***@h:notaport/db has the port 'notaport': "
            "a port is a number from 1 to 65535",
        ),
        (f"postgresql://u:{PASSWORD}@h:70000/db", "has the port 70000"),
        (f"postgresql://u:{PASSWORD}@[::1]:x/db", "has the port 'x'"),
        ("not a url", "the database URL not a url is not one SQLAlchemy can read: write it as "),
        (f"://u:{PASSWORD}@h/db", "the database URL ://u:***@h/db is not one"),
    ],
)
def test_a_malformed_database_url_is_refused_with_its_password_hidden(url, message):
    with pytest.raises(SettingsError, match=re.escape(message)) as refused:
        Settings.from_env({"SCORESVC_DATABASE_URL": url})
    assert PASSWORD not in str(refused.value)


def test_every_field_is_declared_once_with_its_variable_and_default():
    assert [declared.name for declared in SETTINGS] == [field.name for field in fields(Settings)]
    defaults = Settings()
    for declared in SETTINGS:
        assert declared.variable == "SCORESVC_" + declared.name.upper()
        assert declared.default == getattr(defaults, declared.name)
        assert declared.help and not declared.help.endswith(".")


def test_flags_are_unique_and_each_names_its_setting_in_errors():
    flags = [flag for declared in SETTINGS for flag in declared.flags]
    assert len(flags) == len(set(flags))
    options = {declared.name: declared.option for declared in SETTINGS if declared.flags}
    assert options["database_url"] == "--database"
    assert options["port"] == "--port"
    assert options["workers"] == "--workers"
    assert {declared.name for declared in SETTINGS if not declared.flags} == {
        "secret",
        "sqlite_synchronous",
        "admin_token",
        "metrics",
        "writer_token",
    }


@pytest.mark.parametrize("name", ["secret", "admin_token", "writer_token"])
def test_a_secret_is_never_shown_only_whether_it_is_set(name):
    (declared,) = [declared for declared in SETTINGS if declared.name == name]
    assert declared.shown("t" * 40, str) == "set"
    assert declared.shown_default().startswith("none: ")


@pytest.mark.parametrize(("raw", "on"), [("off", False), ("No", False), ("on", True)])
def test_metrics_are_switched_by_their_variable(raw, on):
    assert Settings.from_env({"SCORESVC_METRICS": raw}).metrics is on


def test_limits_and_proxies_are_also_taken_as_text():
    settings = Settings(post_limit="0", login_limit="1/5", trusted_proxies="10.0.0.0/8, ::1")
    assert str(settings.post_limit) == "0" and str(settings.login_limit) == "1/5"
    assert [str(network) for network in settings.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(SettingsError, match=r"^post_limit: 'fast' is not a limit"):
        Settings(post_limit="fast")
