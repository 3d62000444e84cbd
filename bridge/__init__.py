"""The bridge: git host webhooks -> verified, matched, durably queued builds.

`bridge.web.app.create_app(config, store)` is the Flask app factory (nothing happens at import time).
"""

__version__ = "0.1.0"
