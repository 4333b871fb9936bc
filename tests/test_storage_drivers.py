"""Sweep storage that needs a database driver says which one and how to install it (the postgres extra)."""

from __future__ import annotations

import sys

import pytest

from asr_transfer.optuna_storage import open_storage


def test_postgres_storage_without_its_driver_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # imports fail as if the extra were not installed
    with pytest.raises(ImportError) as err:
        open_storage("postgresql://user:secret@db.example/optuna")
    message = str(err.value)
    assert "asr_transfer[postgres]" in message and "psycopg" in message
    assert "secret" not in message  # the URL's password is never printed
    assert "journal:///" in message and "\n" not in message


def test_the_postgres_extra_provides_the_driver():
    import sqlalchemy

    # the postgres extra (also in dev) is the driver SQLAlchemy picks for a plain postgresql:// URL
    dialect = sqlalchemy.engine.make_url("postgresql://user@host/db").get_dialect()
    assert dialect.driver == "psycopg"
    assert dialect.import_dbapi().__name__ == "psycopg"
