"""Hostile and broken remotes for the git mirror: hosts that never answer time out, credentials never
leave the process, dangerous URLs and helpers refused, the URL rules."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import time

import pytest

from bridge.dispatch.mirror import Mirrors, mirror_key
from bridge.payload_files import FileResolution
from bridge.providers.clone import redact, url_refusal
from helpers.git import GIT_ENV, ISOLATED, push
from helpers.ports import free_port
from helpers.mirrors import mirrors  # noqa: F401  (fixtures)


# --- hostile and broken remotes -------------------------------------------------------------------

def test_host_that_never_answers_times_out(tmp_path):
    with socket.socket() as silent:         # accepts connections (backlog), never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"git://127.0.0.1:{silent.getsockname()[1]}/acme/api.git"
        mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=1.0, env=ISOLATED)
        started = time.monotonic()

        got = mirrors.changed_files(push(url, "1" * 40, "2" * 40), url=url)

    assert got == FileResolution(None, "unknown", f"fetching from {url} timed out after 1s")
    assert time.monotonic() - started < 20


def test_credentials_never_leave_the_process(tmp_path, caplog):
    url = f"https://bridge-bot:s3cr3t-t0ken@127.0.0.1:{free_port()}/acme/api.git"   # nothing listens
    mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=10, env=ISOLATED)
    caplog.set_level(logging.DEBUG)
    # A mirror that once answered (a failing fetch into a new one leaves nothing behind).
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "mirrors" / mirror_key(url))],
                   env=GIT_ENV, check=True, capture_output=True)

    got = mirrors.changed_files(push(url, "1" * 40, "2" * 40), url=url)

    assert got.source == "unknown" and "fetch from https://***@127.0.0.1" in got.reason
    [listed] = mirrors.list()
    assert listed["url"] == redact(url) == url.replace("bridge-bot:s3cr3t-t0ken", "***")
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "mirrors").rglob("*") if p.is_file())
    for text in (got.reason, caplog.text, str(listed), on_disk.decode("latin-1")):
        assert "s3cr3t" not in text
    assert mirror_key(url) == mirror_key(url.replace("bridge-bot:s3cr3t-t0ken@", ""))


@pytest.mark.parametrize("template", [
    "ext::sh -c touch% {pwned}",
    "ext::sh -c 'touch {pwned}'",
    "fd::17",
    "--upload-pack=touch {pwned}",
    "-uhttps://example.com/x.git",
    "ssh://-oProxyCommand=touch%20{pwned}/x",
    "-oProxyCommand=touch {pwned}:x",
    "git@-oProxyCommand=x:repo",
    "http://127.0.0.1:1/plain-http-is-not-allowed.git",
    "relative/path",
    "file:///tmp/x\n--upload-pack=touch",
])
def test_dangerous_urls_are_refused(tmp_path, template):
    pwned = tmp_path / "pwned"
    url = template.format(pwned=pwned)
    mirrors = Mirrors(tmp_path / "mirrors", env=ISOLATED)

    for got in (mirrors.changed_files(push(url, "1" * 40, "2" * 40)),            # from the payload
                mirrors.changed_files(push(url, "1" * 40, "2" * 40), url=url)):  # configured
        assert got.source == "unknown" and got.reason.startswith("refused clone URL")
    assert not pwned.exists()
    assert not (tmp_path / "mirrors").exists()


def test_git_itself_refuses_helpers_in_the_mirror_environment(tmp_path):
    # Defence in depth: were url_refusal ever wrong, git run with the mirrors' environment
    # still refuses ext:: and every scheme not allowed.
    pwned = tmp_path / "pwned"
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "m")], env=GIT_ENV, check=True)
    mirrors = Mirrors(tmp_path / "mirrors", env=ISOLATED, allowed_schemes=("https",))
    for url in (f"ext::sh -c touch% {pwned}", f"file://{tmp_path}/m"):
        done = subprocess.run(["git", "fetch", "origin", "1" * 40], cwd=tmp_path / "m",
                              env={**os.environ, **mirrors._git_env(url)}, capture_output=True, text=True)
        assert done.returncode != 0 and "not allowed" in done.stderr
    assert not pwned.exists()


def test_url_rules():
    allowed = ("https", "ssh", "git", "file")
    for ok in ("https://github.com/acme/api.git", "git@github.com:acme/api.git",
               "ssh://git@gitlab.example.com:2222/group/sub/proj.git", "git://127.0.0.1:9418/x",
               "file:///srv/git/x.git", "/srv/git/x.git", "git+ssh://host/x"):
        assert url_refusal(ok, allowed) is None, ok
    assert "scheme 'ssh'" in url_refusal("git@github.com:acme/api.git", ("https",))
    assert redact("fatal: unable to access 'https://u:p@ss@h/x': no") == "fatal: unable to access 'https://***@h/x': no"
    assert redact("git@github.com:acme/api.git") == "git@github.com:acme/api.git"
