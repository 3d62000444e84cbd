"""Concurrent ingests share one transaction (group commit): one that fails must not take the
others of its batch with it, on SQLite and PostgreSQL."""
import threading
from concurrent.futures import ThreadPoolExecutor

from bridge.errors import StoreUnavailable
from helpers.store import db_url, inject_job_insert_failure, new_delivery, new_job, open_store  # noqa: F401

THREADS = 16
BAD = 7


def test_one_failing_ingest_does_not_take_its_batch_with_it(open_store, db_url):
    store = open_store()
    inject_job_insert_failure(db_url, rule="boom")
    start = threading.Barrier(THREADS)

    def one(i):
        start.wait()
        try:
            return store.ingest(new_delivery(f"d-{i}", after=f"{i:040x}"),
                                [new_job("boom" if i == BAD else "fine")])
        except StoreUnavailable as exc:
            return exc

    for _round in range(3):         # several rounds: batches form however the threads are scheduled
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(one, range(THREADS)))
        assert isinstance(results[BAD], StoreUnavailable) and "injected failure" in str(results[BAD])
        good = [r for i, r in enumerate(results) if i != BAD]
        assert all(not isinstance(r, Exception) for r in good), good
        assert store.get_delivery(f"d-{BAD}") is None
        for i, r in enumerate(results):
            if i != BAD:
                assert store.get_delivery(f"d-{i}")["jobs"][0]["rule"] == "fine"
    assert len(store.list_deliveries()) == THREADS - 1
