"""The bridge: git host webhooks -> verified, matched, durably queued builds.

`create_app(config, store)` is the Flask app factory (nothing happens at import time).
"""
from __future__ import annotations

__version__ = "0.1.0"


def create_app(config, store=None, state_dir="var", metrics=None):
    """Build the Flask app serving `/hooks/<source>` (and the health endpoints) for `config`."""
    from flask import Flask

    from .app_state import AppState
    from .ingress import bp as ingress_bp

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None   # ingress enforces the configured cap itself
    if store is None:
        from .store import Store
        store = _OpenWhenReachable(lambda: Store.open(config.database_url(state_dir),
                                                      durability=config.settings.durability))
    app.extensions["bridge"] = AppState(config=config, store=store, state_dir=str(state_dir),
                                        metrics=metrics)
    app.register_blueprint(ingress_bp)
    from .admin import bp as admin_bp
    from .health import bp as health_bp
    app.register_blueprint(health_bp)
    app.register_blueprint(admin_bp)
    return app


class _OpenWhenReachable:
    """The store of a web worker, opened on first use and again after a failed open: a worker
    that starts while the database is down boots anyway and answers 503 until it is back."""

    def __init__(self, opener):
        import threading
        self._opener = opener
        self._store = None
        self._lock = threading.Lock()
        from .errors import StoreUnavailable
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
