"""Migrations: the schema is built from empty, torn down to base, and matches the models."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from dashboard import create_app
from dashboard.extensions import db


@contextmanager
def empty_database(tmp_path):
    """A brand-new empty database: a SQLite file, or a throwaway PostgreSQL database."""
    server_url = os.environ.get("TEST_DATABASE_URL")
    if not server_url:
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    name = f"postino_mig_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(server_url).set(database="postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def migration_app(tmp_path):
    """An app of its own on an empty database, inside its app context."""
    with empty_database(tmp_path) as url:
        app = create_app({
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "migrations",
            "POSTINO_CREDENTIALS_KEY": Fernet.generate_key().decode(),
        })
        with app.app_context():
            yield app
            db.session.remove()
            db.engine.dispose()


def model_tables() -> set[str]:
    """Every table the models declare."""
    return set(db.metadata.tables)


def test_upgrade_builds_every_table_from_an_empty_database(migration_app):
    """`flask db upgrade` on an empty database creates the whole schema."""
    assert set(inspect(db.engine).get_table_names()) == set()
    upgrade()
    tables = set(inspect(db.engine).get_table_names())
    assert model_tables() <= tables
    assert tables - model_tables() == {"alembic_version"}


def test_downgrade_to_base_removes_every_table(migration_app):
    """Every revision can be undone: downgrading to base leaves only alembic's own table."""
    upgrade()
    downgrade(revision="base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
    upgrade()
    assert model_tables() <= set(inspect(db.engine).get_table_names())


def test_the_migrations_match_the_models(migration_app):
    """Like `flask db check`: autogenerate finds nothing the migrations forgot."""
    upgrade()
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True}
        )
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_flask_db_check_reports_no_pending_change(migration_app):
    """The operator's `flask db check` agrees after upgrade."""
    upgrade()
    result = migration_app.test_cli_runner().invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output


def test_the_database_has_foreign_keys_and_indexes_by_name(migration_app):
    """Named constraints (the naming convention) let batch migrations alter them later."""
    upgrade()
    inspector = inspect(db.engine)
    foreign_keys = inspector.get_foreign_keys("message")
    assert foreign_keys and all(fk["name"] for fk in foreign_keys)
    index_names = {ix["name"] for ix in inspector.get_indexes("message")}
    assert {"ix_message_due", "ix_message_reference_norm_created",
            "ix_message_recipient_created"} <= index_names
    # covered by the composite indexes, dropped by 0002 (one B-tree less per purged row)
    assert not {"ix_message_reference", "ix_message_recipient"} & index_names
