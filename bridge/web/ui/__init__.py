"""The delivery page (`/ui/`): deliveries, one delivery with its trace, jobs needing attention,
retry and replay, and "try a payload" (`/ui/explain`, `POST /api/explain`); server-rendered
Flask and Jinja, no script.

Input: admin requests (ui/auth.py says who). Output: the blueprint `bp` for the app factory:
HTML pages with a strict CSP; actions go through the store's operator functions.
"""
from bridge.web.ui import actions, pages, session, tryout  # noqa: F401  (their views register on bp)
from bridge.web.ui.base import bp

__all__ = ["bp"]
