"""scoresvc: a small, fast, self-hosted score server for games."""

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scoresvc.application import ScoreApp, create_app

__all__ = ["ScoreApp", "app", "create_app"]

_app_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    # Everything here is looked up on first use, so that importing a module of the package
    # (scoresvc.settings, say) loads nothing else. `waitress-serve scoresvc:app` looks `app` up
    # here: it is built on that first look-up, from SCORESVC_* variables, so that importing
    # the package alone opens no database. (No module of the package may be called app:
    # importing it would bind the module to this name.)
    if name in ("ScoreApp", "create_app"):
        from scoresvc import application

        return getattr(application, name)
    if name != "app":
        raise AttributeError(f"module 'scoresvc' has no attribute {name!r}")
    with _app_lock:
        if "app" not in globals():
            from scoresvc.application import create_app
            from scoresvc.logconfig import configure_logging
            from scoresvc.settings import Settings

            settings = Settings.from_env()
            configure_logging(settings.logfile)
            globals()["app"] = create_app(settings)
    return globals()["app"]
