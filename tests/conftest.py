"""Shared fixtures: a rules file, a real SQLite store and the Flask app built from them."""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests/: `import helpers` (also in `-p conftest` runs)

from helpers.rules import BASE_RULES, SECRET_ENV  # noqa: E402

# Stand-ins live on 127.0.0.1; a proxy set on the host must not see them.
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ["no_proxy"] = os.environ["NO_PROXY"]


def pytest_collection_modifyitems(items):
    """Everything under tests/e2e/ starts real processes: mark it slow by its folder."""
    e2e = Path(__file__).resolve().parent / "e2e"
    for item in items:
        if e2e in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def secret_env(monkeypatch):
    for k, v in SECRET_ENV.items():
        monkeypatch.setenv(k, v)
    return SECRET_ENV


@pytest.fixture
def write_rules(tmp_path, secret_env):
    def write(text: str = BASE_RULES, name: str = "rules.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path
    return write


@pytest.fixture
def make_app(tmp_path, write_rules):
    """make_app(rules_text=...) -> (app, store): the real app on a real SQLite file."""
    from bridge.config.load import load_config
    from bridge.store import Store
    from bridge.web.app import create_app

    stores = []

    def make(text: str = BASE_RULES):
        config = load_config(write_rules(text))
        store = Store.open(f"sqlite:///{tmp_path / 'bridge.db'}", durability="normal")
        stores.append(store)
        return create_app(config, store=store, state_dir=str(tmp_path)), store

    yield make
    for s in stores:
        s.close()


@pytest.fixture
def client(make_app):
    app, store = make_app()
    c = app.test_client()
    c.store = store
    return c


@pytest.fixture(scope="session", autouse=True)
def _clean_metric_dirs(tmp_path_factory):
    """Bridges started by tests keep their metric files in /dev/shm (memory): remove those this
    session made for bridges whose state directory lies in its temporary directory, and no
    other (a developer's bridge running beside `make test` keeps its own)."""
    import shutil
    from bridge.metrics import shm_metrics_dir
    shm = Path("/dev/shm")
    before = set(shm.glob("bridge-metrics-*")) if shm.is_dir() else set()
    yield
    made = (set(shm.glob("bridge-metrics-*")) if shm.is_dir() else set()) - before
    if made:
        for path in made & _metric_dirs_under(tmp_path_factory.getbasetemp(), shm_metrics_dir):
            shutil.rmtree(path, ignore_errors=True)


def _metric_dirs_under(base: Path, name_of) -> set[Path]:
    """The /dev/shm metric directory a bridge would use for each directory under `base`, taken
    as its state directory (the name is a hash of that path: it cannot be read backwards)."""
    out = {name_of(base)}
    for root, dirs, _ in os.walk(base):
        out.update(name_of(Path(root) / d) for d in dirs)
    return out
