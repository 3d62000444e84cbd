"""Which URLs the git mirrors fetch from: payload URLs limited to https and ssh, the next candidate tried
when one fails (a private repository over ssh with the service user's key), `${repo}` in a source's
clone_url, the schemes git may speak, and the delivery id on every changed-files log line. Real git
repositories; "ssh" is a stand-in command that runs git's remote side locally."""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from types import SimpleNamespace

import pytest
from helpers.git import ISOLATED, Upstream, private_repo, push, ssh_host  # noqa: F401  (fixture)
from helpers.ports import free_port

from bridge.config.load import load_config
from bridge.dispatch.changes import resolve_changed_files, source_clone_url
from bridge.dispatch.mirror import Mirrors, mirror_key
from bridge.payload_files import FileResolution
from bridge.providers.clone import expand_clone_url
from bridge.events import Commit
from bridge.logs import JsonFormatter
from bridge.providers.clone import url_host
from bridge.dispatch.changes import make_path_decider
from helpers.clone_rules import rules


HOSTS = ("git.example.invalid",)


def hosts_for(event) -> tuple[str, ...]:
    """HOSTS and the host:port of every URL the event names (its https URLs on 127.0.0.1)."""
    found = [url_host(u) for u in event.clone_urls]
    return HOSTS + tuple(f"{h[1]}:{h[2]}" for h in found if h)


def json_lines(caplog, delivery):
    """The log lines as `bridge.logs` writes them, filtered like `jq 'select(.delivery == ...)'`."""
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records if r.name == "bridge.changes"]
    return [line for line in lines if line["delivery"] == delivery]


# --- URLs from the payload ---------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["file", "git"])
def test_payload_urls_may_not_point_at_local_or_git_protocol_repositories(tmp_path, scheme):
    up = Upstream(tmp_path / "local", f"file://{tmp_path / 'local'}")
    before, after = up.commit({"a": "1"}), up.commit({"b": "1"})
    url = up.url if scheme == "file" else f"git://127.0.0.1:{free_port()}/local"
    mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=10, env=ISOLATED)

    got = mirrors.changed_files(push(url, before, after))

    assert got.source == "unknown"
    assert got.reason == (f"refused clone URL '{url}': scheme '{scheme}' is not one of https, ssh")
    assert not (tmp_path / "mirrors").exists()
    # The same URL as the admin's configured clone_url is fetched...
    if scheme == "file":
        assert mirrors.changed_files(push(url, before, after), url=url).files == {"b"}
    # ...and so is a payload URL when a test widens payload_schemes on purpose.
    wide = Mirrors(tmp_path / "wide", env=ISOLATED, payload_schemes=("https", "ssh", "file"))
    if scheme == "file":
        assert wide.changed_files(push(url, before, after)).files == {"b"}


def test_private_repository_the_https_url_fails_the_ssh_url_answers(tmp_path, ssh_host, caplog):
    # GitHub lists clone_url (https) before ssh_url: without credentials https fails at once
    # (here: nothing listens), then the service user's ssh key answers.
    up, before, after = private_repo(ssh_host)
    https = f"https://127.0.0.1:{free_port()}/acme/api.git"
    event = push(https, before, after, provider="github", delivery="gh-delivery-7")
    event = replace(event, clone_urls=(https, up.url))
    mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=30, env=ssh_host.env)
    caplog.set_level(logging.INFO, logger="bridge.changes")

    got = resolve_changed_files(event, mirrors, hosts=hosts_for(event))

    assert (got.source, got.files) == ("mirror", {"a.txt", "src/b.py"})
    assert f"in the mirror of {up.url} (tried first: fetch from {https} failed: " in got.reason
    assert "git@git.example.invalid git-upload-pack 'acme/api.git'" in ssh_host.calls.read_text()
    # The https URL that never answered left no mirror behind; the ssh one is kept.
    assert [m["url"] for m in mirrors.list()] == [up.url]
    assert sorted(p.name for p in (tmp_path / "mirrors").iterdir() if p.is_dir()) == [mirror_key(up.url)]
    # Every changed-files line carries the delivery id as a field, not only in its text.
    lines = json_lines(caplog, "gh-delivery-7")
    assert [line["level"] for line in lines] == ["warning", "info"]
    assert https in lines[0]["message"] and up.url in lines[1]["message"]
    assert json_lines(caplog, None) == []


def test_every_url_failing_lists_each_reason(tmp_path, ssh_host, caplog):
    https = f"https://127.0.0.1:{free_port()}/acme/gone.git"
    ssh = "git@git.example.invalid:acme/gone.git"          # no such repository on the host
    event = push(https, "1" * 40, "2" * 40, delivery="gl-9")
    event = replace(event, clone_urls=(https, ssh, "file:///etc"))
    mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=30, env=ssh_host.env)
    caplog.set_level(logging.INFO, logger="bridge.changes")

    got = mirrors.changed_files(event, hosts=hosts_for(event))

    assert got.source == "unknown" and got.files is None
    first, second, third = got.reason.split("; ")
    assert first.startswith(f"fetch from {https} failed: ")
    assert second.startswith(f"fetch from {ssh} failed: ")
    assert third == "refused clone URL 'file:///etc': scheme 'file' is not one of https, ssh"
    assert mirrors.list() == []
    assert len(json_lines(caplog, "gl-9")) == 4 and json_lines(caplog, None) == []


@pytest.mark.parametrize("bad", ["https://[oops/acme/api.git", "ssh://[::1/acme/api.git"])
def test_a_malformed_payload_url_is_refused_and_the_next_one_answers(tmp_path, ssh_host, bad):
    # urlsplit raises for these; a refusal, not an exception the dispatcher would retry forever.
    up, before, after = private_repo(ssh_host)
    event = replace(push(bad, before, after, provider="github"), clone_urls=(bad, up.url, bad))
    mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=30, env=ssh_host.env)

    got = resolve_changed_files(event, mirrors, hosts=hosts_for(event))

    assert (got.source, got.files) == ("mirror", {"a.txt", "src/b.py"}), got.reason
    assert got.reason.endswith(f"in the mirror of {up.url} (tried first: refused clone URL "
                               f"'{bad}': not a valid URL)")
    alone = mirrors.changed_files(replace(event, clone_urls=(bad,)))
    assert alone == FileResolution(None, "unknown", f"refused clone URL '{bad}': not a valid URL")


def test_a_malformed_payload_url_leaves_the_decision_to_on_unknown_files(tmp_path, ssh_host):
    bad = "https://[oops/a.git"
    config = load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=rules())
    event = push(bad, "1" * 40, "2" * 40, provider="github")
    event = replace(event, source="gh", clone_urls=(bad,), commits=(Commit(id="2" * 40, added=("a",)),))
    for policy, run in (("skip", False), ("run", True)):
        job = SimpleNamespace(event=event, path_filter={"paths": ["src/**"],
                                                                  "on_unknown_files": policy})

        got = make_path_decider(tmp_path / "state", config)(job)

        assert got[0] is run and f"refused clone URL '{bad}': not a valid URL" in got[1], got


def test_before_gone_is_final_no_other_url_is_tried(tmp_path, ssh_host):
    up, _, after = private_repo(ssh_host)
    gone = "3" * 40
    other = f"https://127.0.0.1:{free_port()}/acme/api.git"
    event = push(up.url, gone, after)
    event = replace(event, clone_urls=(up.url, other))
    mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=30, env=ssh_host.env)

    got = mirrors.changed_files(event, hosts=hosts_for(event))

    assert got.source == "unknown" and other not in got.reason
    assert f"before {gone[:12]} is no longer on {up.url}" in got.reason


# --- ${repo} in a configured clone_url -----------------------------------------------------------

def test_clone_url_with_repo_fetches_each_repository_of_an_org_wide_hook(tmp_path, ssh_host):
    source = SimpleNamespace(provider="github",
                             options={"clone_url": "git@git.example.invalid:${repo}.git"})
    mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=30, env=ssh_host.env)
    for name in ("acme/api", "acme/.github", "other/web.site"):
        up, before, after = private_repo(ssh_host, name)
        event = push(f"https://127.0.0.1:{free_port()}/{name}.git", before, after)
        event = replace(event, repo=name)

        got = resolve_changed_files(event, mirrors, url=source_clone_url(source, event))

        assert (got.source, got.files) == ("mirror", {"a.txt", "src/b.py"}), got.reason
        assert got.reason.endswith(f"in the mirror of git@git.example.invalid:{name}.git")
    assert len(mirrors.list()) == 3


@pytest.mark.parametrize("repo", ["../etc", "acme/..", "-oProxyCommand=x/y", "a b/c", "acme//api",
                                  "acme/api\n", ""])
def test_repo_names_that_cannot_go_into_a_url(tmp_path, repo):
    url, why = expand_clone_url("git@host:${repo}.git", repo)
    assert why is not None and "cannot go into ${repo}" in why
    event = push("https://127.0.0.1:1/x.git", "1" * 40, "2" * 40)
    event = replace(event, repo=repo, clone_urls=())
    got = Mirrors(tmp_path / "m", env=ISOLATED).changed_files(event, url="git@host:${repo}.git")
    assert got.source == "unknown" and got.reason == why
    assert not (tmp_path / "m").exists()


def test_clone_token_goes_into_a_repo_template():
    source = SimpleNamespace(provider="github", options={
        "clone_url": "https://github.example.com/${repo}.git", "clone_token": "ghs_t"})
    event = SimpleNamespace(repo="acme/api", clone_urls=())
    url = source_clone_url(source, event)
    assert url == "https://x-access-token:ghs_t@github.example.com/${repo}.git"
    assert expand_clone_url(url, "acme/api") == (
        "https://x-access-token:ghs_t@github.example.com/acme/api.git", None)


def test_git_is_allowed_only_the_schemes_a_url_needs(tmp_path):
    mirrors = Mirrors(tmp_path / "m", env=ISOLATED)
    assert mirrors._git_env("https://x/y", ("https", "ssh"))["GIT_ALLOW_PROTOCOL"] == "https:ssh"
    assert mirrors._git_env("file:///y")["GIT_ALLOW_PROTOCOL"] == "https:ssh:git:file"


def test_git_fetching_a_payload_url_may_speak_only_the_payload_schemes(tmp_path, ssh_host):
    # What the fetch itself runs with (the "ssh" command inherits git's environment), not what
    # a helper returns: a payload's ssh URL gets https:ssh, never the configured file or git.
    up, before, after = private_repo(ssh_host)
    mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=30, env=ssh_host.env)

    got = mirrors.changed_files(push(up.url, before, after), hosts=HOSTS)

    assert got.source == "mirror", got.reason
    assert set(ssh_host.allowed.read_text().split()) == {"https:ssh"}
    # Narrower payload schemes: exactly those.
    narrow = Mirrors(tmp_path / "narrow", fetch_timeout=30, env=ssh_host.env, payload_schemes=("ssh",))
    ssh_host.allowed.unlink()
    assert narrow.changed_files(push(up.url, before, after), hosts=HOSTS).source == "mirror"
    assert set(ssh_host.allowed.read_text().split()) == {"ssh"}


def test_git_fetching_a_configured_file_url_may_speak_the_configured_schemes(tmp_path):
    up = Upstream(tmp_path / "up", f"file://{tmp_path / 'up'}")
    before, after = up.commit({"a": "1"}), up.commit({"b": "1"})
    record = tmp_path / "allowed"
    upload_pack = tmp_path / "upload-pack"       # git runs it for file:// in git's environment
    upload_pack.write_text(f'#!/bin/sh\necho "${{GIT_ALLOW_PROTOCOL-unset}}" >> {record}\n'
                           'exec git-upload-pack "$@"\n')
    upload_pack.chmod(0o755)
    env = {**ISOLATED, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "remote.origin.uploadpack",
           "GIT_CONFIG_VALUE_0": str(upload_pack)}

    got = Mirrors(tmp_path / "mirrors", env=env).changed_files(push(up.url, before, after), url=up.url)

    assert got.files == {"b"}, got.reason
    assert set(record.read_text().split()) == {"https:ssh:git:file"}
    # A payload file:// URL, where a test allows it, gets exactly the payload schemes.
    record.unlink()
    wide = Mirrors(tmp_path / "wide", env=env, payload_schemes=("https", "file"))
    assert wide.changed_files(push(up.url, before, after)).files == {"b"}
    assert set(record.read_text().split()) == {"https:file"}
