"""The Flask app factory: `create_app(config, store)` -> the app serving `/hooks/<source>`, the
health and admin endpoints and the delivery page (`/ui/`, `/api/explain`); nothing happens at
import time, and the store opens on first use."""
from __future__ import annotations

import threading

from flask import Flask

from bridge.errors import StoreUnavailable
from bridge.store import Store
from bridge.web.admin import bp as admin_bp
from bridge.web.health import bp as health_bp
from bridge.web.ingress import HooksFirst, bp as ingress_bp
from bridge.web.state import AppState
from bridge.web.ui import bp as ui_bp
from bridge.web.ui.auth import ProxyPrefix


def create_app(config, store=None, state_dir="var", metrics=None):
    """Build the Flask app serving `/hooks/<source>` (and the health endpoints) for `config`."""
    app = Flask("bridge")   # the import name the app always had (its name and root path)
    app.config["MAX_CONTENT_LENGTH"] = None   # ingress enforces the configured cap itself
    if store is None:
        store = _OpenWhenReachable(lambda: Store.open(config.database_url(state_dir),
                                                      durability=config.settings.durability,
                                                      background_checkpoints=True))
    app.extensions["bridge"] = AppState(config=config, store=store, state_dir=str(state_dir),
                                        metrics=metrics)
    app.register_blueprint(ingress_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(ui_bp)
    state = app.extensions["bridge"]
    app.wsgi_app = ProxyPrefix(HooksFirst(app.wsgi_app, state),
                               lambda: state.config.settings.ui.trusted_proxies)
    return app


class _OpenWhenReachable:
    """The store of a web worker, opened on first use and again after a failed open: a worker
    that starts while the database is down boots anyway and answers 503 until it is back."""

    def __init__(self, opener):
        self._opener = opener
        self._store = None
        self._lock = threading.Lock()
        try:
            self._store = opener()
        except StoreUnavailable:   # the first request tries again
            pass

    def __getattr__(self, name):
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._opener()   # raises StoreUnavailable -> 503
                store = self._store
        return getattr(store, name)
