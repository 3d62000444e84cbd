"""Process stage: a process's store opened at its start, or a clean exit when it cannot be.

Input: the accepted `Config` and the state directory. Output: an open store (`cibridge serve`
creates or checks the schema with it once, before its children start), or exit 1 with the
store's own message (the database down, a schema to upgrade) and no traceback. Its own module,
so that the supervisor imports no dispatcher code to call it.
"""
from __future__ import annotations

import sys

from bridge.errors import StoreUnavailable
from bridge.store import open_for


def open_store_or_exit(config, state_dir, **kw):
    """`store.open_for`, or exit 1 with its message (database down, schema to upgrade) - no
    traceback."""
    try:
        return open_for(config, state_dir, **kw)
    except StoreUnavailable as exc:
        print(f"bridge: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
