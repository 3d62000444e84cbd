"""A host's delivery id reused for another body: the id it is stored under (`<id>~<16 hex of
sha256(body)>`, within the 200-character column), on SQLite and PostgreSQL."""
import hashlib

from bridge.store.inbox import REUSED_ID_SEPARATOR, reused_delivery_id
from helpers.store import db_url, new_delivery, new_job, open_store  # noqa: F401  (fixtures)


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


def test_the_reused_id_is_the_host_id_and_the_body_digest():
    assert REUSED_ID_SEPARATOR == "~"
    assert reused_delivery_id("d-1", b"second") == f"d-1~{digest(b'second')}"


def test_a_long_host_id_is_clipped_to_fit_200_characters():
    host = "x" * 300
    rid = reused_delivery_id(host, b"body")
    assert rid == "x" * 183 + "~" + digest(b"body")
    assert len(rid) == 200
    assert len(reused_delivery_id("y" * 183, b"b")) == 200
    assert reused_delivery_id("y" * 183, b"b") == "y" * 183 + "~" + digest(b"b")


def test_a_200_character_id_reused_is_stored_under_its_clipped_id(open_store):
    store = open_store()
    host = "h" * 200
    first = store.ingest(new_delivery(host, body=b"first", after="a" * 40), [new_job()])
    assert first.delivery == host and first.reused_id is None
    second = store.ingest(new_delivery(host, body=b"second", after="b" * 40), [new_job()])
    rid = "h" * 183 + "~" + digest(b"second")
    assert (second.delivery, second.reused_id, second.duplicate_of) == (rid, host, None)
    assert len(second.job_ids) == 1
    assert store.get_delivery(rid)["body"] == b"second"
    # The same second body again is a redelivery of the reused id: nothing new.
    again = store.ingest(new_delivery(host, body=b"second", after="b" * 40), [new_job()])
    assert (again.delivery, again.duplicate_of, again.job_ids) == (rid, rid, [])
