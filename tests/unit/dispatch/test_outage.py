"""The one "store down" tracker of the dispatch side: an outage is logged once when it begins and once
when it ends (if asked), and the back-off doubles while it lasts, capped."""
from __future__ import annotations

import logging

from bridge.dispatch.outage import STORE_BACKOFF_MAX, Outage
from bridge.errors import StoreUnavailable

LOG = "test.bridge.outage"


def test_an_outage_is_logged_once_at_each_end(caplog):
    outage = Outage(logging.getLogger(LOG), recovered="store available again", interval=0.1)
    with caplog.at_level(logging.INFO, logger=LOG):
        outage.up()                                       # never down: nothing to say
        for _ in range(3):
            outage.down("cannot claim jobs", StoreUnavailable("database is locked"))
        assert outage.is_down
        outage.up()
        outage.up()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "cannot claim jobs: database is locked"),
        (logging.INFO, "store available again")]
    assert not outage.is_down


def test_without_a_recovery_line_the_end_is_silent(caplog):
    outage = Outage(logging.getLogger(LOG))
    with caplog.at_level(logging.INFO, logger=LOG):
        outage.down("statuses", StoreUnavailable("gone"))
        outage.up()
    assert [r.getMessage() for r in caplog.records] == ["statuses: gone"]


def test_the_back_off_doubles_capped_and_starts_over_with_the_next_outage():
    outage = Outage(logging.getLogger(LOG), interval=0.5)
    delays = []
    for _ in range(6):
        outage.down("x", StoreUnavailable("down"))
        delays.append(outage.delay)
    assert delays == [1.0, 2.0, 4.0, STORE_BACKOFF_MAX, STORE_BACKOFF_MAX, STORE_BACKOFF_MAX]
    outage.up()
    outage.down("x", StoreUnavailable("down"))
    assert outage.delay == 1.0
