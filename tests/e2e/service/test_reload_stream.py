"""Rules reload on a real `cibridge serve` under a steady stream of signed deliveries: it keeps serving,
refuses a bad file, swaps in a good one, records the rules version of every verdict; gunicorn's own
lines are JSON lines too."""
from __future__ import annotations

import os
import secrets
import signal
import threading
import time

import pytest
import requests
from helpers.process import BridgeProcess, wait_for
from helpers.ops import GH_PUSH, delivery, json_lines, live_workers, sha


# --- reload under a steady stream ------------------------------------------------------------

RULES_A = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}"]
targets:
  mem-a:
    kind: memory
rules:
  - name: rule-a
    on: {repo: "**", branches: ["**"]}
    run: {target: mem-a, parameters: {SHA: "${sha}"}}
settings:
  durability: normal
"""
RULES_B = RULES_A.replace("rule-a", "rule-b").replace("mem-a", "mem-b")
RULES_C = RULES_A.replace("rule-a", "rule-c")       # valid, but written without a reload
RULES_BROKEN = RULES_A.replace("run: {target: mem-a", "run: {target: mem-x")


class Stream:
    """Signed pushes, one after another on fresh connections, on `threads` threads, until
    stopped (or `limit` requests, so the load always ends by itself)."""

    def __init__(self, bridge: BridgeProcess, secret: str, threads: int = 2, limit: int = 4000):
        self.bridge, self.secret, self.limit = bridge, secret, limit
        self.results: list[dict] = []
        self._stop = threading.Event()
        self._go = threading.Event()
        self._go.set()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                         for k in range(threads)]

    def _run(self, k: int) -> None:
        n = 0
        while not self._stop.is_set() and len(self.results) < self.limit:
            if not self._go.is_set():
                self._idle.release()
                self._go.wait()
                continue
            n += 1
            body, headers, did = delivery(GH_PUSH, secret=self.secret, after=sha(k << 32 | n))
            began = time.monotonic()
            try:
                r = self.bridge.post("github", body, headers)
                result = {"status": r.status_code, "matched": r.json().get("matched")}
            except (requests.RequestException, ValueError) as exc:
                result = {"status": None, "error": repr(exc)}
            with self._lock:
                self.results.append({**result, "delivery": did, "began": began,
                                     "ended": time.monotonic()})

    def pause(self) -> None:
        """Returns once no request is in flight (e.g. before killing a worker on purpose)."""
        self._go.clear()
        for _ in self._threads:
            assert self._idle.acquire(timeout=15)

    def resume(self) -> None:
        self._go.set()

    def count(self) -> int:
        with self._lock:
            return len(self.results)

    def wait_more(self, n: int) -> None:
        target = self.count() + n
        wait_for(lambda: self.count() >= target, timeout=20, what=f"{n} more replies")

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)


def readyz(bridge: BridgeProcess) -> dict:
    return requests.get(f"{bridge.url}/readyz", timeout=5).json()


def test_reload_keeps_serving_refuses_a_bad_file_and_swaps_a_good_one(tmp_path):
    secret = secrets.token_hex(16)
    bridge = BridgeProcess(tmp_path / "reload", RULES_A, env={"GH_SECRET": secret}, workers=3)
    with bridge:
        with Stream(bridge, secret) as stream:
            version_a = readyz(bridge)["rules_version"]
            stream.wait_more(30)

            # A broken file: refused, said in the log and in /readyz; the old rules keep deciding.
            bridge.rules.write_text(RULES_BROKEN)
            bridge.signal(signal.SIGHUP)
            ready = wait_for(lambda: (lambda r: r if "rules_reload_error" in r else None)(readyz(bridge)),
                             what="/readyz to report the refused reload")
            assert ready["status"] == "ready" and ready["rules_version"] == version_a
            assert any("rules.yaml:" in p and "mem-x" in p for p in ready["rules_reload_error"]), ready
            refused_at = stream.count()
            stream.wait_more(30)

            # A valid edit without a reload, and a worker that restarts meanwhile: it boots on the
            # rules the service accepted, not on the file, so no two workers decide differently.
            bridge.rules.write_text(RULES_C)
            old_workers = set(live_workers(bridge, 3))
            stream.pause()   # requests in flight on a killed worker would fail: not the point here
            os.kill(min(old_workers), signal.SIGKILL)
            wait_for(lambda: len(set(bridge.web_workers()) - old_workers) == 1, what="a new worker")
            stream.resume()
            stream.wait_more(60)
            assert {tuple(r["matched"] or ()) for r in stream.results[refused_at:]} == {("rule-a",)}

            # A good file: every worker and the dispatcher switch; no request fails meanwhile.
            old_workers = set(live_workers(bridge, 3))
            bridge.rules.write_text(RULES_B)
            hup_at = time.monotonic()
            bridge.signal(signal.SIGHUP)
            wait_for(lambda: bridge.web_workers() and not set(bridge.web_workers()) & old_workers,
                     what="the old workers to be replaced")
            swapped_at = time.monotonic()
            stream.wait_more(60)

            # A burst of reloads (an impatient operator, a config tool) while jobs run: nothing
            # dies or hangs, and no request fails.
            dispatcher, supervisor = bridge.child("dispatch"), bridge.proc.pid
            for _ in range(100):
                os.kill(dispatcher, signal.SIGHUP)
                time.sleep(0.002)
            for _ in range(20):
                os.kill(supervisor, signal.SIGHUP)
                time.sleep(0.002)
            stream.wait_more(30)
            assert bridge.child("dispatch") == dispatcher and bridge.proc.poll() is None
        ready = readyz(bridge)
        assert "rules_reload_error" not in ready and ready["rules_version"] != version_a
        version_b = ready["rules_version"]

        results = stream.results
        failed = [r for r in results if r["status"] != 202]
        assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
        assert len(results) >= 210
        before = [r for r in results if r["ended"] < hup_at]
        after = [r for r in results if r["began"] > swapped_at]
        assert before and all(r["matched"] == ["rule-a"] for r in before)
        assert after and all(r["matched"] == ["rule-b"] for r in after)

        # Every stored verdict names the rules version that decided it; the dispatcher reloaded
        # too (mem-b exists only in the new rules: its jobs would be dead letters otherwise).
        store = bridge.store()
        try:
            rule_of = {version_a: "rule-a", version_b: "rule-b"}
            for r in results:
                stored = store.get_delivery(r["delivery"])
                assert stored["rules_version"] in rule_of, stored["rules_version"]
                assert [v["rule"] for v in stored["verdicts"] if v["matched"]] == \
                    [rule_of[stored["rules_version"]]] == r["matched"]

            def drained():
                jobs = store.queue_stats(time.time())["jobs"]
                return jobs if jobs["queued"] == jobs["running"] == 0 else None
            jobs = wait_for(drained, what="the queue to drain")
            assert jobs["succeeded"] == len(results) and jobs["dead"] == 0, jobs
        finally:
            store.close()

    lines = json_lines(bridge.logs(), gunicorn_text=True)   # gunicorn reports the killed worker
    refusals = [l for l in lines if l["level"] == "error" and "reload refused" in l["message"]]
    assert refusals and any("mem-x" in p for p in refusals[0]["problems"]), refusals
    assert any(l["logger"] == "bridge.serve" and f"rules version {version_b}" in l["message"]
               and l["level"] == "info" for l in lines)


@pytest.mark.parametrize("logger_class", [None, "bridge.logs.GunicornLogger"],
                         ids=["default", "GunicornLogger"])
def test_gunicorns_own_lines_are_json_lines_too(tmp_path, logger_class):
    env = {"GH_SECRET": secrets.token_hex(8)}
    if logger_class:
        conf = tmp_path / "gunicorn.conf.py"
        conf.write_text(f"logger_class = {logger_class!r}\n")
        env["BRIDGE_GUNICORN_CONFIG"] = str(conf)
    bridge = BridgeProcess(tmp_path / "g", RULES_A, env=env, workers=2, dispatcher=False)
    with bridge:
        os.kill(live_workers(bridge, 2)[0], signal.SIGKILL)
        wait_for(lambda: "SIGKILL" in bridge.logs(), what="gunicorn to report the killed worker")
    lines = json_lines(bridge.logs())
    assert any(l["logger"] == "gunicorn.error" and "SIGKILL" in l["message"] for l in lines)
