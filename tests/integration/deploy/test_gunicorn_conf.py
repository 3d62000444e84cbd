"""deploy/gunicorn.conf.py: only real settings with valid values, timeouts that fit the git hosts and
systemd, request limits that admit real deliveries, workers, and `bridge web` running with it."""
from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
import time

import requests
from helpers.deploy import GUNICORN_CONF, HEADERS_JSON, UNIT_NAMES, seconds, unit


# --- deploy/gunicorn.conf.py -------------------------------------------------------------------

def gunicorn_settings() -> dict:
    """The file's settings as gunicorn reads them: module globals that name a setting."""
    namespace = runpy.run_path(str(GUNICORN_CONF))
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and not callable(v) and k != "os"}


def test_gunicorn_config_names_only_real_settings_with_valid_values():
    from gunicorn.config import Config
    cfg = Config()
    settings = gunicorn_settings()
    # gunicorn silently ignores an unknown name in a config file: a typo would go unnoticed.
    unknown = sorted(set(settings) - set(cfg.settings))
    assert not unknown, unknown
    for key, value in settings.items():
        cfg.set(key, value)          # gunicorn's own validators
    assert cfg.forwarded_allow_ips == ["127.0.0.1"]
    assert cfg.proxy_allow_ips == ["127.0.0.1"]
    assert cfg.forwarder_headers == []
    assert cfg.secure_scheme_headers == {"X-FORWARDED-PROTO": "https"}
    assert cfg.control_socket_disable is True
    assert 2 <= cfg.workers <= 8


def test_gunicorn_timeouts_fit_the_git_hosts_and_systemd():
    s = gunicorn_settings()
    # The hosts give up after 10 s: a worker must be allowed that long before it is killed.
    assert s["timeout"] > 10
    # A stop or reload lets requests finish before systemd's own deadline kills everything.
    for name in UNIT_NAMES:
        assert s["graceful_timeout"] < seconds(unit(name)["TimeoutStopSec"][0]), name


def test_gunicorn_request_limits_admit_real_deliveries():
    s = gunicorn_settings()
    assert 0 < s["limit_request_line"] <= 8190
    assert 0 < s["limit_request_field_size"] <= 8190
    assert 0 < s["limit_request_fields"] <= 100
    if HEADERS_JSON.exists():
        deliveries = [h for h in json.loads(HEADERS_JSON.read_text()).values() if isinstance(h, dict)]
        assert deliveries
        # Room for the host's headers plus what nginx and the client add (Host,
        # Content-Length, X-Forwarded-*, ...).
        assert max(len(h) for h in deliveries) + 12 <= s["limit_request_fields"]
        assert max(len(k) + len(str(v)) + 2 for h in deliveries for k, v in h.items()) \
            < s["limit_request_field_size"]


def test_gunicorn_workers_follow_web_concurrency_or_the_cpus(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert gunicorn_settings()["workers"] == 3
    monkeypatch.delenv("WEB_CONCURRENCY")
    assert gunicorn_settings()["workers"] == max(2, min(len(os.sched_getaffinity(0)), 8))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bridge_web_runs_with_the_gunicorn_config(tmp_path, write_rules):
    """The real `cibridge web --gunicorn-config deploy/gunicorn.conf.py`, on 127.0.0.1."""
    rules = write_rules()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "web", "--rules", str(rules),
         "--state-dir", str(tmp_path / "state"), "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--gunicorn-config", str(GUNICORN_CONF)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                answer = requests.get(url + "/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "cibridge web did not answer"
                time.sleep(0.1)
        assert answer.status_code == 200
        # The file's limits (50 fields, 2048-byte request line; gunicorn's own are 100 and 4094)
        # are in force.
        many = {f"X-Filler-{i}": "x" for i in range(60)}
        assert requests.get(url + "/healthz", headers=many, timeout=5).status_code in (400, 431)
        assert requests.get(url + "/healthz", headers=dict(list(many.items())[:20]),
                            timeout=5).status_code == 200
        assert requests.get(url + "/" + "a" * 3000, timeout=5).status_code in (400, 414)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
