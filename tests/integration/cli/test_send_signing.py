"""`cibridge send` signs as the host would, for every host (GitLab with a plain token or a signing
token), and the real bridge (a real HTTP server on 127.0.0.1) accepts what it sends."""
import json
import threading

import pytest
from click.testing import CliRunner
from helpers.rules import GITHUB_SECRET, GITLAB_TOKEN, HOSTS_RULES
from helpers.payloads import load_payload
from werkzeug.serving import make_server

from bridge.cli.main import cli as main
from bridge.providers import sign_headers


@pytest.fixture(params=[None])
def server(make_app, request):
    app, store = make_app(request.param) if request.param else make_app()
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}", store
    srv.shutdown()
    thread.join(10)


def _send(rules, url, source, payload, *extra):
    return CliRunner().invoke(main, ["send", "--rules", str(rules), "--source", source, "--url", url,
                                     *extra, str(payload)])


@pytest.mark.parametrize("source, rel", [("gitlab", "gitlab/push_hook__goscm-branch.json"),
                                         ("github", "github/push__goscm-branch.json")])
def test_send_is_accepted_by_the_bridge(server, tmp_path, source, rel):
    url, store = server
    body, _ = load_payload(rel)
    payload = tmp_path / "payload.json"
    payload.write_bytes(body)
    result = _send(tmp_path / "rules.yaml", url, source, payload, "--delivery", f"send-{source}")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(("202 ", "200 ")), result.output
    row = store.get_delivery(f"send-{source}")
    assert row is not None and row["provider"] == source and row["body"] == body


@pytest.mark.parametrize("server", [HOSTS_RULES], indirect=True)
@pytest.mark.parametrize("source, rel", [
    ("gitea", "gitea/push__woodpecker-multi-commits.json"), ("forgejo", "forgejo/push__e2e-new-branch.json"),
    ("bitbucket", "bitbucket/repo_push__jenkins-update.json"),
    ("gitlab-signed", "gitlab/push_hook__goscm-branch.json")])
def test_send_signs_for_each_host(server, tmp_path, source, rel):
    url, store = server
    body, _ = load_payload(rel)
    payload = tmp_path / "payload.json"
    payload.write_bytes(body)
    result = _send(tmp_path / "rules.yaml", url, source, payload, "--delivery", f"send-{source}")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("202 "), result.output
    assert store.get_delivery(f"send-{source}")["body"] == body


def test_send_with_a_wrong_secret_is_refused(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("GL_TOKEN", "not-the-token")
    body, _ = load_payload("gitlab/push_hook__goscm-branch.json")
    payload = tmp_path / "payload.json"
    payload.write_bytes(body)
    rules = tmp_path / "rules.yaml"
    # The server was built with the right token; send reads the rules again, now with a wrong one.
    result = _send(rules, url, "gitlab", payload)
    assert result.exit_code == 1
    assert result.output.startswith("401 ")


def test_sign_headers_as_the_hosts_do():
    gl = sign_headers("gitlab", b"{}", GITLAB_TOKEN.encode(), delivery="u-1")
    assert gl["X-Gitlab-Token"] == GITLAB_TOKEN
    assert (gl["X-Gitlab-Event"], gl["X-Gitlab-Event-UUID"]) == ("Push Hook", "u-1")
    tag = sign_headers("gitlab", b"{}", GITLAB_TOKEN.encode(), event="Tag Push Hook", delivery="u-2")
    assert tag["X-Gitlab-Event"] == "Tag Push Hook"
    gh = sign_headers("github", b"{}", GITHUB_SECRET.encode(), delivery="g-1")
    assert gh["X-Hub-Signature-256"] == \
        "sha256=" + __import__("hmac").new(GITHUB_SECRET.encode(), b"{}", "sha256").hexdigest()
    assert (gh["X-GitHub-Event"], gh["X-GitHub-Delivery"]) == ("push", "g-1")
    with pytest.raises(KeyError):
        sign_headers("no-such-host", b"{}", b"s", delivery="x")
