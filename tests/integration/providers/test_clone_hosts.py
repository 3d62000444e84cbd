"""SSRF through payload clone URLs: the mirror fetches only from hosts the operator configured
(the source's clone_url, or its `clone_hosts:`, by default its API's host), never from one a
payload names. Real listening sockets that count connections, real git repositories served
through the "ssh" stand-in of test_changes_urls, rules.yaml loaded for real."""
from __future__ import annotations

import json
import socket
import threading
import textwrap
from dataclasses import replace
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from helpers.payloads import load_payload
from helpers.git import ISOLATED, push
from helpers.git import private_repo, ssh_host  # noqa: F401 (fixture)

from bridge.cli.main import cli
from bridge.config.load import load_config
from bridge.dispatch.changes import resolve_for_source
from bridge.dispatch.mirror import Mirrors
from bridge.errors import ConfigError
from bridge.events import Commit
from bridge.providers.clone import url_host
from bridge.dispatch.changes import make_path_decider


class Listener:
    """A TCP listener on 127.0.0.1 that counts every connection made to it (and closes it)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def attack_urls(port: int) -> tuple[str, ...]:
    """Every way a payload might name the listener: plainly, behind userinfo, over ssh."""
    return (f"https://127.0.0.1:{port}/acme/api.git",
            f"https://github.com@127.0.0.1:{port}/acme/api.git",
            f"https://github.com:443@127.0.0.1:{port}/acme/api.git",
            f"ssh://git@127.0.0.1:{port}/acme/api.git",
            f"ssh://git@localhost:{port}/acme/api.git")


def rules(source: str) -> str:
    return textwrap.dedent("""\
        sources:
        """) + textwrap.indent(textwrap.dedent(source), "  ") + textwrap.dedent("""\
        targets:
          t: {kind: memory}
        rules: []
        """)


def capped(event, urls, source="gh"):
    """The event as a capped push of `source` whose payload names `urls`."""
    return replace(event, source=source, clone_urls=tuple(urls), commits_complete=False,
                   commits=(Commit(id=event.after, added=("docs/a.md",)),))


def decide(tmp_path, config, event, policy="skip"):
    job = SimpleNamespace(event=event, path_filter={"paths": ["src/**"],
                                                              "on_unknown_files": policy})
    return make_path_decider(tmp_path / "state", config)(job)


# --- the dispatcher -------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_a_payload_naming_an_unconfigured_host_is_never_contacted(tmp_path, listener, provider):
    config = load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=rules(f"""\
        gh:
          provider: {provider}
          secrets: ["${{env:S}}"]
        """))
    event = capped(push("x", "1" * 40, "2" * 40, provider=provider), attack_urls(listener.port))

    for policy, run in (("skip", False), ("run", True)):
        got, why = decide(tmp_path, config, event, policy)

        assert got is run and f"on_unknown_files: {policy}" in why, why
        assert f"host 127.0.0.1:{listener.port} is not one the bridge fetches from" in why
        default = "github.com" if provider == "github" else "gitlab.com"
        assert f"sets no clone_hosts, so its API's host: {default}" in why
    assert listener.connections == 0
    assert not (tmp_path / "state" / "mirrors").exists() or \
        not any((tmp_path / "state" / "mirrors").iterdir())


def test_another_port_of_the_api_host_is_another_host(tmp_path, listener):
    # Statuses go to a service on 127.0.0.1: that allows its port (and 443/22), not the listener.
    config = load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=rules("""\
        gh:
          provider: github
          secrets: ["${env:S}"]
          report: {token: "${env:S}", api_url: "http://127.0.0.1:1/api/v3"}
        """))
    assert config.sources["gh"].clone_hosts == ("127.0.0.1", "127.0.0.1:1")
    event = capped(push("x", "1" * 40, "2" * 40, provider="github"), attack_urls(listener.port))

    run, why = decide(tmp_path, config, event)

    assert run is False and f"host 127.0.0.1:{listener.port} is not one" in why, why
    assert listener.connections == 0


def test_explain_resolve_files_obeys_the_same_hosts(tmp_path, listener, monkeypatch):
    (tmp_path / "rules.yaml").write_text(rules("""\
        gl:
          provider: gitlab
          secrets: ["${env:S}"]
        """).replace("rules: []", textwrap.dedent("""\
        rules:
          - name: src
            on: {repo: "**", paths: ["src/**"]}
            on_unknown_files: skip
            run: {target: t}""")))
    payload = json.loads(load_payload("gitlab/push_hook__docs.json")[0])
    payload["project"]["git_http_url"] = f"https://127.0.0.1:{listener.port}/acme/api.git"
    payload["project"]["git_ssh_url"] = f"ssh://git@127.0.0.1:{listener.port}/acme/api.git"
    payload["repository"]["git_http_url"] = payload["project"]["git_http_url"]
    payload["repository"]["git_ssh_url"] = payload["project"]["git_ssh_url"]
    (tmp_path / "p.json").write_text(json.dumps(payload))
    monkeypatch.chdir(tmp_path)

    done = CliRunner().invoke(cli, ["explain", "--source", "gl", "--event", "Push Hook",
                                    "--resolve-files", "--format", "json", "p.json"],
                              env={"S": "x"})

    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    assert result["files"]["source"] == "unknown"
    assert f"host 127.0.0.1:{listener.port} is not one the bridge fetches from" in \
        result["files"]["reason"]
    assert result["rules"][0]["matched"] is False
    assert listener.connections == 0


def test_a_configured_host_is_fetched_from_and_an_unlisted_one_is_not(tmp_path, ssh_host,
                                                                      listener, monkeypatch):
    for key, value in ssh_host.env.items():
        monkeypatch.setenv(key, value)
    up, before, after = private_repo(ssh_host)
    config = load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=rules("""\
        gh:
          provider: github
          secrets: ["${env:S}"]
          clone_hosts: [GIT.example.invalid.]
        """))
    event = capped(push(up.url, before, after, provider="github"),
                   (f"https://127.0.0.1:{listener.port}/acme/api.git", up.url))

    run, why = decide(tmp_path, config, event)
    got = resolve_for_source(event, Mirrors(tmp_path / "m", env=ssh_host.env), config.sources["gh"])

    assert run is True and "files from mirror" in why, why
    assert got.source == "mirror" and got.files == {"a.txt", "src/b.py"}
    assert f"host 127.0.0.1:{listener.port} is not one the bridge fetches from" in got.reason
    assert "source 'gh' clone_hosts: git.example.invalid" in got.reason
    assert listener.connections == 0
    assert "git@git.example.invalid git-upload-pack 'acme/api.git'" in ssh_host.calls.read_text()


def test_clone_url_is_always_allowed_and_an_empty_list_allows_no_payload_url(tmp_path, ssh_host,
                                                                             listener, monkeypatch):
    for key, value in ssh_host.env.items():
        monkeypatch.setenv(key, value)
    up, before, after = private_repo(ssh_host)
    config = load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=rules("""\
        gh:
          provider: github
          secrets: ["${env:S}"]
          clone_url: git@git.example.invalid:${repo}.git
          clone_hosts: []
        """))
    event = capped(push(up.url, before, after, provider="github"),
                   (f"https://127.0.0.1:{listener.port}/acme/api.git", "https://github.com/acme/api"))

    run, why = decide(tmp_path, config, event)

    assert run is True and "files from mirror" in why, why
    assert listener.connections == 0
    # Without the configured URL answering, nothing else is tried: the list is empty.
    config = load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=rules("""\
        gh:
          provider: github
          secrets: ["${env:S}"]
          clone_hosts: []
        """))
    run, why = decide(tmp_path, config, event)
    assert run is False and "source 'gh' clone_hosts: none" in why, why
    assert listener.connections == 0


def test_a_source_gone_from_rules_yaml_fetches_from_nowhere(tmp_path, listener):
    config = load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=rules("""\
        gh:
          provider: github
          secrets: ["${env:S}"]
        """))
    event = capped(push("x", "1" * 40, "2" * 40, provider="github"), attack_urls(listener.port),
                   source="removed")

    run, why = decide(tmp_path, config, event)

    assert run is False and "no source configured for this event" in why, why
    assert listener.connections == 0


def test_payload_urls_must_name_their_host_unambiguously(tmp_path, listener):
    mirrors = Mirrors(tmp_path / "m", env=ISOLATED, fetch_timeout=5)
    tricks = [f"https://github.com\\@127.0.0.1:{listener.port}/x.git",
              f"https://127.0.0.1:{listener.port}#@github.com/x.git",
              f"https://127.0.0.1:{listener.port}?@github.com/x.git",
              f"https://a@b@127.0.0.1:{listener.port}/x.git",
              f"https://127.0.0.1%3a{listener.port}/x.git",
              f"https://[::ffff:127.0.0.1]:{listener.port}/x.git",
              f"ssh://git@127.0.0.1:{listener.port}/x.git",
              f"git@[127.0.0.1:{listener.port}]:x.git",
              "git@127.0.0.1:x.git"]
    event = capped(push("x", "1" * 40, "2" * 40, provider="github"), tricks)

    got = mirrors.changed_files(event, hosts=("github.com",))

    assert got.source == "unknown"
    assert len(got.reason.split("; ")) == len(tricks), got.reason
    assert all(r.startswith("refused clone URL") for r in got.reason.split("; ")), got.reason
    assert listener.connections == 0


@pytest.mark.parametrize("url, host", [
    ("https://GitHub.com./acme/api.git", ("https", "github.com", 443)),
    ("https://github.com@evil.example/x.git", ("https", "evil.example", 443)),
    ("https://x-access-token:t@github.com/x.git", ("https", "github.com", 443)),
    ("ssh://git@gitlab.example.com:2222/g/p.git", ("ssh", "gitlab.example.com", 2222)),
    ("git@gitlab.example.com:g/sub/p.git", ("ssh", "gitlab.example.com", 22)),
    ("https://[2001:db8::1]/x.git", ("https", "[2001:db8::1]", 443)),
    ("https://evil.example\\@github.com/x.git", None),
    ("https://evil.example#@github.com/x.git", None),
    ("https://evil.example%2f@github.com/x.git", None),
    ("https://a@b@github.com/x.git", None),
    ("git@[evil:22]:x.git", None),
    ("https:///x.git", None),
    ("file:///srv/x.git", None),
])
def test_url_host(url, host):
    assert url_host(url) == host


def test_port_pinned_entries(tmp_path, listener):
    mirrors = Mirrors(tmp_path / "m", env=ISOLATED, fetch_timeout=5)
    url = f"ssh://git@gitlab.example.com:{listener.port}/g/p.git"
    [(_, refusal)] = mirrors.candidates(capped(push(url, "1" * 40, "2" * 40), [url]),
                                        hosts=("gitlab.example.com:22",))
    assert f"host gitlab.example.com:{listener.port} is not one" in refusal
    [(_, refusal)] = mirrors.candidates(capped(push(url, "1" * 40, "2" * 40), [url]),
                                        hosts=(f"gitlab.example.com:{listener.port}",))
    assert refusal is None
    # A host without a port: its scheme's default port only (another port is another service).
    [(_, refusal)] = mirrors.candidates(capped(push(url, "1" * 40, "2" * 40), [url]),
                                        hosts=("gitlab.example.com",))
    assert f"host gitlab.example.com:{listener.port} is not one" in refusal
    for allowed, hosts in [("ssh://git@gitlab.example.com/g/p.git", ("gitlab.example.com",)),
                           ("git@gitlab.example.com:g/p.git", ("gitlab.example.com",)),
                           ("https://gitlab.example.com/g/p.git", ("gitlab.example.com",)),
                           ("https://gitlab.example.com:443/g/p.git", ("gitlab.example.com",)),
                           ("https://gitlab.example.com/g/p.git", ("gitlab.example.com:443",)),
                           ("git@gitlab.example.com:g/p.git", ("gitlab.example.com:22",))]:
        [(_, refusal)] = mirrors.candidates(capped(push(allowed, "1" * 40, "2" * 40), [allowed]),
                                            hosts=hosts)
        assert refusal is None, (allowed, hosts, refusal)
    for refused, hosts in [("https://gitlab.example.com:22/g/p.git", ("gitlab.example.com",)),
                           ("ssh://git@gitlab.example.com:443/g/p.git", ("gitlab.example.com",)),
                           ("git@gitlab.example.com:g/p.git", ("gitlab.example.com:443",))]:
        [(_, refusal)] = mirrors.candidates(capped(push(refused, "1" * 40, "2" * 40), [refused]),
                                            hosts=hosts)
        assert refusal and "is not one the bridge fetches from" in refusal, (refused, hosts)


# --- rules.yaml ----------------------------------------------------------------------------------

@pytest.mark.parametrize("source, hosts, default", [
    ("provider: github", ("github.com",), True),
    ("provider: gitlab", ("gitlab.com",), True),
    ("provider: github\n  report: {token: '${env:S}', api_url: 'https://ghe.example.com/api/v3'}",
     ("ghe.example.com",), True),
    ("provider: gitlab\n  report: {token: '${env:S}', api_url: 'https://gl.example.com:8443/api/v4'}",
     ("gl.example.com", "gl.example.com:8443"), True),
    ("provider: gitlab\n  clone_hosts: [gitlab.example.com, 'ssh.example.com:2222', '[2001:DB8::1]']",
     ("gitlab.example.com", "ssh.example.com:2222", "[2001:db8::1]"), False),
    ("provider: gitlab\n  clone_hosts: GitLab.example.com", ("gitlab.example.com",), False),
    ("provider: github\n  clone_hosts: []", (), False),
])
def test_clone_hosts_and_their_default(tmp_path, source, hosts, default):
    text = rules(f"s:\n  {source}\n  secrets: ['${{env:S}}']\n")
    src = load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=text).sources["s"]
    assert (src.clone_hosts, src.clone_hosts_default) == (hosts, default)


def test_clone_hosts_problems_name_their_lines(tmp_path):
    text = textwrap.dedent("""\
        sources:
          a:
            provider: gitlab
            secrets: ["${env:S}"]
            clone_hosts:
              - gitlab.example.com
              - https://gitlab.example.com/
              - "*.example.com"
              - "host:99999"
          b:
            provider: github
            secrets: ["${env:S}"]
            clone_hosts: {github.com: true}
        targets:
          t: {kind: memory}
        rules: []
        """)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=text)
    problems = err.value.problems
    assert [p.split(": ", 1)[0] for p in problems] == [
        "rules.yaml:7", "rules.yaml:8", "rules.yaml:9", "rules.yaml:13"], problems
    assert "source 'a': clone_hosts entries are host names" in problems[0]
    assert "'https://gitlab.example.com/'" in problems[0]
    assert "source 'b': clone_hosts must be a list of host names" in problems[3]
