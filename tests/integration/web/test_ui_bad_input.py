"""The delivery page given values nobody should send (a hand-edited page cursor, a refusal's
address beyond any id, a NUL in a filter) on SQLite and PostgreSQL: 400 or 404, never a 500,
and the store goes on answering (PostgreSQL refuses a NUL or an out-of-range integer with an
error that would otherwise surface as "store unavailable")."""
from __future__ import annotations

import pytest
from helpers.store import db_url  # noqa: F401  (fixture)

from bridge.config.load import load_config
from bridge.store import NewRefusal, Store
from bridge.web.app import create_app


@pytest.fixture
def ui(db_url, write_rules, tmp_path):  # noqa: F811
    store = Store.open(db_url)
    app = create_app(load_config(write_rules()), store=store, state_dir=str(tmp_path))
    client = app.test_client()
    client.store = store
    client.rid = store.record_refusal(NewRefusal(received_at=1000.0, source="nope", status=404,
                                                 reason="unknown source 'nope'"))
    yield client
    store.close()


@pytest.mark.parametrize("after", ["1000.0:a\x00b", "nan:x", "rnan:1", "inf:x", "r-inf:1", "r1000.0:",
                                   "r1000.0:x", "1000.0"])
def test_a_bad_page_cursor_is_a_400(ui, after):
    resp = ui.get("/ui/", query_string={"after": after})
    assert resp.status_code == 400, resp.get_data(as_text=True)[:300]
    assert "bad filter" in resp.get_data(as_text=True)
    assert ui.get("/ui/").status_code == 200


@pytest.mark.parametrize("after, listed", [("r1000.0:99999999999999999999999", True),
                                           ("r1000.0:-99999999999999999999", False),
                                           ("r1000.0:2147483648", True)])
def test_a_refusal_cursor_beyond_any_id_is_a_page(ui, after, listed):
    """After a refusal id no row can have: the refusals of that time below it, if any."""
    resp = ui.get("/ui/", query_string={"after": after})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert (f"/ui/refused/{ui.rid}" in resp.get_data(as_text=True)) is listed


@pytest.mark.parametrize("name", ["source", "repo", "ref", "rule"])
def test_a_nul_in_a_filter_is_a_400(ui, name):
    assert ui.get("/ui/", query_string={name: "a\x00b"}).status_code == 400
    assert ui.get("/ui/").status_code == 200


def test_a_refusal_beyond_any_id_is_not_found(ui):
    assert ui.get("/ui/refused/99999999999999999999999").status_code == 404
    assert ui.get(f"/ui/refused/{ui.rid}").status_code == 200


def test_a_delivery_address_with_a_nul_is_not_found(ui):
    assert ui.get("/ui/deliveries/a%00b").status_code == 404
    assert ui.get("/ui/").status_code == 200
