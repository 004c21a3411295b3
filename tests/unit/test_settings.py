import os

import pytest

from scoresvc.settings import Settings, SettingsError


def test_defaults_are_an_in_memory_database_signed_keys_and_ten_minutes():
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite://"
    assert settings.session_ttl == 600
    assert settings.store_tokens is False
    assert settings.secret is None
    assert (settings.host, settings.port) == ("localhost", 8080)
    assert settings.workers == 1


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
