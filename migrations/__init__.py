"""Alembic migrations, installed as scoresvc.migrations so the service can run them."""
