"""The page's and ingress's brakes as plain parts: failed logins per client in a sliding window
(IPv6 by its /64), the client's address as the trusted proxy names it, the recorder of refusals
(one a second, one write at a time, the rest counted), the refused-row chart and cursors."""
from __future__ import annotations

from flask import Response

from bridge.store import Store
from bridge.web.peers import client_address
from bridge.web.refusals import RefusalRecorder
from bridge.web.throttle import TokenBrake, client_key
from bridge.web.ui import chart
from bridge.web.ui.pages import format_cursor, parse_cursor


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_few_failures_a_minute_then_wait_until_the_oldest_is_a_minute_old():
    clock = Clock()
    limiter = TokenBrake(failures=3, window=60.0, clock=clock)
    for i in range(3):
        assert limiter.wait("192.0.2.1") == 0
        limiter.failed("192.0.2.1")
        clock.now += 10
    assert limiter.wait("192.0.2.1") == 30            # the first failure (t=1000) leaves at 1060
    assert limiter.wait("192.0.2.2") == 0             # another client
    clock.now = 1060.0
    assert limiter.wait("192.0.2.1") == 0             # two failures left in the window
    limiter.failed("192.0.2.1")
    assert limiter.wait("192.0.2.1") == 10
    limiter.succeeded("192.0.2.1")
    assert limiter.wait("192.0.2.1") == 0


def test_a_wait_is_at_least_a_second_and_old_clients_are_forgotten():
    clock = Clock()
    limiter = TokenBrake(failures=1, window=60.0, clock=clock, max_clients=2)
    limiter.failed("192.0.2.1")
    clock.now += 59.9
    assert limiter.wait("192.0.2.1") == 1
    limiter.failed("192.0.2.2")
    limiter.failed("192.0.2.3")                       # three clients: the first is forgotten
    assert limiter.wait("192.0.2.1") == 0 and limiter.wait("192.0.2.3") == 60


def test_ipv6_clients_count_by_their_64():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1" and client_key("local") == "local"


def test_the_client_address_comes_from_a_trusted_proxy_only():
    trusted = ["127.0.0.1", "10.0.0.0/24"]
    assert client_address("127.0.0.1", {"X-Forwarded-For": "203.0.113.7"}, trusted) == "203.0.113.7"
    assert client_address("10.0.0.9", {"X-Forwarded-For": "1.1.1.1, 203.0.113.7"}, trusted) == "203.0.113.7"
    assert client_address("198.51.100.4", {"X-Forwarded-For": "203.0.113.7"}, trusted) == "198.51.100.4"
    assert client_address("127.0.0.1", {"X-Forwarded-For": "<script>"}, trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", {}, trusted) == "127.0.0.1"
    assert client_address(None, {}, trusted) == "local"



def test_behind_a_chain_of_trusted_proxies_the_client_is_the_nearest_untrusted_address():
    """Proxies that append ($proxy_add_x_forwarded_for) leave the client's address before their
    own: the last entry is then a trusted proxy, and every client would share its address (one
    login brake for all, every refusal "from" the proxy). Entries a client wrote itself, left of
    the one the first proxy appended, still count for nothing."""
    trusted = ["127.0.0.1", "10.0.0.0/24"]
    assert client_address("127.0.0.1", {"X-Forwarded-For": "203.0.113.7, 10.0.0.2"}, trusted) == "203.0.113.7"
    assert client_address("127.0.0.1", {"X-Forwarded-For": "1.1.1.1, 203.0.113.7, 10.0.0.2"},
                          trusted) == "203.0.113.7"
    assert client_address("127.0.0.1", {"X-Forwarded-For": "10.0.0.3, 10.0.0.2"}, trusted) == "10.0.0.3"
    assert client_address("127.0.0.1", {"X-Forwarded-For": "<x>, 10.0.0.2"}, trusted) == "10.0.0.2"

def test_the_recorder_writes_one_a_second_one_at_a_time_and_counts_the_rest(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'bridge.db'}")
    clock = Clock(5.0)
    rec = RefusalRecorder(clock=clock, wall=lambda: 7000.0)

    def note(resp, delivery):
        return rec.note(store, resp, source="github", status=401, reason="bad", delivery=delivery,
                        peer="192.0.2.1")
    try:
        first = Response("no", 401)
        assert note(first, "a")                       # t=5: written when its reply closes
        clock.now += 5
        assert not note(Response("no", 401), "b")     # a write is under way: counted
        first.close()
        third = Response("no", 401)
        assert note(third, "c")                       # t=10: free again, and a second later
        third.close()
        clock.now += 0.999
        assert not note(Response("no", 401), "d")     # within a second of the last: counted
        clock.now += 0.001
        last = Response("no", 401)
        assert note(last, "e")
        last.close()
        got = [(r["host_delivery"], r["dropped"], r["received_at"]) for r in store.delivery_page().rows]
        assert got == [("e", 1, 7000.0), ("c", 1, 7000.0), ("a", 0, 7000.0)]
    finally:
        store.close()


def test_a_write_that_never_ends_stops_blocking_after_a_while(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'bridge.db'}")
    clock = Clock()
    rec = RefusalRecorder(clock=clock)
    try:
        assert rec.note(store, Response("no", 401), source="s", status=404, reason="r", delivery=None,
                        peer=None)                    # its reply is never closed
        clock.now += 29
        assert not rec.note(store, Response(), source="s", status=404, reason="r", delivery=None, peer=None)
        clock.now += 1
        last = Response()
        assert rec.note(store, last, source="s", status=404, reason="r", delivery=None, peer=None)
        last.close()
        assert [r["dropped"] for r in store.delivery_page().rows] == [1]
    finally:
        store.close()


def test_the_chart_draws_refusals_above_the_stored_outcomes():
    now = 1_700_000_000.0
    start = (int(now) // 60 + 1) * 60 - chart.SPAN
    c = chart.build([(start, "matched", 1), (start, "refused", 3)], now)
    assert c.totals["refused"] == 3 and c.paths["refused"] == "M0 0.00h1v75.00h-1z"


def test_cursors_after_a_delivery_or_a_refusal_read_back_exactly():
    for cursor in ((1234.5678901234, "d-1:x"), (0.1 + 0.2, 17, "refused")):
        assert parse_cursor(format_cursor(cursor)) == cursor
