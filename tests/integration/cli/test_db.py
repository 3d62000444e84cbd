"""`cibridge db status` and `db upgrade` on a real PostgreSQL database, the database URL read from the
rules and the environment."""
from __future__ import annotations

from click.testing import CliRunner

from bridge.cli.db import db
from bridge.store.schema import SCHEMA_VERSION
from helpers.pg import RULES, SECRET, make_version_1, pg_db, sql  # noqa: F401  (fixture)


def test_bridge_db_status_and_upgrade(pg_db):
    url = pg_db.replace("postgres@", "postgres:hunter2@")    # trust auth ignores it; never shown
    runner = CliRunner()
    out = runner.invoke(db, ["status", "--database-url", url])
    assert out.exit_code == 1, out.output
    assert "schema version: none" in out.output and "hunter2" not in out.output

    make_version_1(pg_db)
    out = runner.invoke(db, ["status", "--database-url", url])
    assert out.exit_code == 1
    assert f"schema version: 1 (this bridge: {SCHEMA_VERSION})" in out.output
    assert "2  pending: " in out.output and "run `cibridge db upgrade`" in out.output

    out = runner.invoke(db, ["upgrade", "--database-url", url])
    assert out.exit_code == 0, out.output
    assert f"schema version 1 -> {SCHEMA_VERSION}" in out.output
    out = runner.invoke(db, ["upgrade", "--database-url", url])
    assert out.exit_code == 0 and "already current" in out.output

    out = runner.invoke(db, ["status", "--database-url", url])
    assert out.exit_code == 0, out.output
    assert "hunter2" not in out.output and "***" in out.output

    sql(pg_db, "ALTER TABLE jobs DROP COLUMN url")
    out = runner.invoke(db, ["status", "--database-url", url])
    assert out.exit_code == 1 and "drift: column jobs.url is missing" in out.output


def test_bridge_db_reads_the_database_from_rules_and_environment(tmp_path, pg_db, monkeypatch):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(lease=2, ledger=tmp_path / "ledger"), encoding="utf-8")
    monkeypatch.setenv("GH_SECRET", SECRET)
    monkeypatch.setenv("BRIDGE_DATABASE_URL", pg_db)
    out = CliRunner().invoke(db, ["upgrade", "--rules", str(rules), "--state-dir", str(tmp_path)])
    assert out.exit_code == 0 and f"schema version none -> {SCHEMA_VERSION}" in out.output
    assert sql(pg_db, "SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)]
