"""A known delivery id with a new body is a delivery of its own, not a redelivery: stored and
built under `<id>~<body hash>`, while a true repeat (same id, same body) stays a duplicate, on
SQLite and PostgreSQL, also when the deliveries arrive at once; and through the real app."""
from __future__ import annotations

import concurrent.futures
import json
import logging
import threading

from helpers.rules import GITHUB_SECRET
from helpers.payloads import load_payload, sign_github

from bridge.config.load import load_config
from bridge.store import reused_delivery_id
from bridge.web.app import create_app
from helpers.store import db_url, new_delivery, new_job, open_store  # noqa: F401  (fixtures)


def test_a_new_body_under_a_stored_id_is_stored_and_built_as_its_own_delivery(open_store):
    store = open_store()
    first = store.ingest(new_delivery("d-1", body=b"first", after="a" * 40), [new_job()])
    second = store.ingest(new_delivery("d-1", body=b"second", after="b" * 40), [new_job()])
    other_id = reused_delivery_id("d-1", b"second")
    assert other_id.startswith("d-1~") and len(other_id) == len("d-1~") + 16
    assert (second.delivery, second.reused_id, second.duplicate_of) == (other_id, "d-1", None)
    assert len(second.job_ids) == 1 and second.job_ids != first.job_ids
    assert store.get_delivery("d-1")["body"] == b"first"
    row = store.get_delivery(other_id)
    assert row["body"] == b"second" and [j["id"] for j in row["jobs"]] == second.job_ids
    assert store.queue_stats(2000.0)["jobs"]["queued"] == 2

    # A true repeat of either body is still a duplicate: nothing new stored or built.
    again = store.ingest(new_delivery("d-1", body=b"second", after="b" * 40), [new_job()])
    assert (again.duplicate_of, again.job_ids) == (other_id, [])
    again = store.ingest(new_delivery("d-1", body=b"first", after="a" * 40), [new_job()])
    assert (again.duplicate_of, again.reused_id, again.job_ids) == ("d-1", None, [])
    assert store.queue_stats(2000.0)["jobs"]["queued"] == 2


def test_a_new_body_of_the_same_push_is_stored_but_the_content_key_still_dedupes(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1", body=b"first", after="c" * 40), [new_job()])
    second = store.ingest(new_delivery("d-1", body=b"first, reformatted", after="c" * 40), [new_job()])
    assert second.reused_id == "d-1" and second.content_duplicate_of == "d-1"
    assert second.job_ids == []
    assert store.get_delivery(second.delivery)["outcome"] == "duplicate"


def test_a_long_id_stays_within_the_id_column(open_store):
    store = open_store()
    long_id = "x" * 200
    store.ingest(new_delivery(long_id, body=b"one"), [new_job()])
    got = store.ingest(new_delivery(long_id, body=b"two"), [new_job()])
    assert len(got.delivery) == 200 and got.reused_id == long_id and got.job_ids
    assert store.get_delivery(got.delivery)["body"] == b"two"


def test_concurrent_arrivals_store_each_body_once(open_store):
    # One Store per thread (on SQLite each has its own lock; on PostgreSQL its own connection):
    # four copies of each of two bodies under one id, all at once.
    stores = [open_store() for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    bodies = [(b"body-A", "a"), (b"body-B", "b")]

    def ingest(i, delivery):
        body, after = bodies[i % 2]
        barrier.wait()        # a new push per round and body: the content key does not dedupe
        return stores[i].ingest(new_delivery(delivery, body=body, after=after * 39 + delivery[-1]),
                                [new_job()])

    for n in range(3):       # a few rounds: the interleavings differ
        delivery = f"same-id-{n}"
        with concurrent.futures.ThreadPoolExecutor(len(stores)) as pool:
            results = list(pool.map(ingest, range(len(stores)), [delivery] * len(stores)))
        first_body = stores[0].get_delivery(delivery)["body"]
        other_body = next(b for b, _ in bodies if b != first_body)
        other_id = reused_delivery_id(delivery, other_body)
        built = sorted(r.delivery for r in results if r.job_ids)
        assert built == sorted([delivery, other_id]), results
        assert stores[0].get_delivery(other_id)["body"] == other_body
        dupes = [r.duplicate_of for r in results if not r.job_ids]
        assert sorted(dupes) == sorted([delivery] * 3 + [other_id] * 3), results
    assert stores[0].queue_stats(2000.0)["jobs"]["queued"] == 6


def test_through_the_app_a_reused_id_with_a_new_body_is_accepted_and_logged(
        open_store, write_rules, tmp_path, caplog):
    store = open_store()
    app = create_app(load_config(write_rules()), store=store, state_dir=str(tmp_path))
    client = app.test_client()
    body, headers = load_payload("github/push__goscm-branch.json")
    headers["X-GitHub-Delivery"] = "reused-1"
    payload = json.loads(body)
    payload["after"] = payload["head_commit"]["id"] = "e" * 40
    other = json.dumps(payload).encode()

    def send(b):
        return client.post("/hooks/github", data=b, headers={**headers, **sign_github(b, GITHUB_SECRET)})

    assert send(body).status_code == 202
    with caplog.at_level(logging.WARNING, logger="bridge.ingress"):
        resp = send(other)
    assert resp.status_code == 202, resp.get_json()
    stored_as = resp.get_json()["delivery"]
    assert stored_as == reused_delivery_id("reused-1", other)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "reused-1" in warning.getMessage() and stored_as in warning.getMessage()
    assert store.get_delivery(stored_as)["body"] == other

    again = send(other)          # a redelivery of the second: a duplicate of what it was stored as
    assert again.status_code == 200 and again.get_json()["duplicate_of"] == stored_as
    again = send(body)
    assert again.status_code == 200 and again.get_json()["duplicate_of"] == "reused-1"
