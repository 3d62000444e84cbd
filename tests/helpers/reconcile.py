"""Reconcile tests' parts: a bridge app served over real HTTP in this process (so a host stand-in
can deliver and redeliver to it), the GitHub API stand-in with hooks and refs, rules naming both,
a chain of real pushes (each `before` the previous `after`), and the `setup` fixture that makes
them all for one test."""
from __future__ import annotations

import json
import os
import textwrap
import threading
from contextlib import contextmanager

import pytest
from werkzeug.serving import make_server

from helpers.push import push
from helpers.rules import GITHUB_SECRET
from helpers.ports import free_port
from helpers.standins.github import GitHubAPIStandin
from helpers.standins.github_hooks import GitHubHooks

API_TOKEN = "ghp_reconcile0000000000000000000000000000"
LIMITED_TOKEN = "ghp_contentsonly000000000000000000000000"
REPO = "f110/test"


def rules_text(api_url: str, hook_id: int, *, token_env: str = "GH_API_TOKEN", extra: str = "",
               watch: str = "", settings: str = "") -> str:
    """Every push of every branch builds (rule `build`), every tag too (rule `tag`)."""
    return textwrap.dedent("""\
        settings:
          durability: normal
        {settings}
        sources:
          github:
            provider: github
            secrets: ["${{env:GH_SECRET}}"]
            reconcile:
              token: "${{env:{token_env}}}"
              api_url: {api_url}
              hooks: [{{repo: {repo}, id: {hook_id}}}]
        {watch}
        targets:
          mem: {{kind: memory}}
        rules:
          - name: build
            on: {{repo: "**", branches: ["**"]}}
            run: {{target: mem, parameters: {{SHA: "${{sha}}"}}}}
          - name: tag
            on: {{repo: "**", tags: ["**"]}}
            run: {{target: mem, parameters: {{TAG: "${{tag}}"}}}}
        {extra}""").format(api_url=api_url, hook_id=hook_id, repo=REPO, token_env=token_env,
                           extra=extra, settings=textwrap.indent(settings, "  "),
                           watch=textwrap.indent(watch, "    "))


class ServedBridge:
    """The bridge's web app on a real port (start and stop it like a bridge going down)."""

    def __init__(self, app, port: int):
        self.app, self.port = app, port
        self._server = None

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/github"

    def start(self):
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextmanager
def github_host(*, limited=()):
    """The GitHub API stand-in with hooks, delivery logs and refs."""
    api = GitHubAPIStandin(token=API_TOKEN)
    api.hooks = GitHubHooks(api, limited=limited)
    with api:
        yield api


def chain(count: int, *, branch: str = "main", start: str | None = None):
    """`count` pushes to `branch` of REPO, each starting where the last ended: [(after, body)]."""
    before = start or os.urandom(20).hex()
    out = []
    for _ in range(count):
        p = push(REPO, f"refs/heads/{branch}")
        payload = json.loads(p.body)
        payload["before"] = before
        body = json.dumps(payload).encode()
        out.append((payload["after"], body))
        before = payload["after"]
    return out


def free_bridge_port() -> int:
    return free_port()


@pytest.fixture
def setup(make_app, monkeypatch):
    """setup(token=..., watch=...) -> (api, bridge (started), hook id, store, config)."""
    monkeypatch.setenv("GH_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("GH_LIMITED", LIMITED_TOKEN)
    bridges = []
    with github_host(limited=[LIMITED_TOKEN]) as api:
        def make(*, token_env="GH_API_TOKEN", watch="", start=True, **kw):
            port = free_bridge_port()
            hook = api.hooks.add_hook(f"http://127.0.0.1:{port}/hooks/github", GITHUB_SECRET, repo=REPO)
            app, store = make_app(rules_text(api.url, hook, token_env=token_env, watch=watch, **kw))
            bridge = ServedBridge(app, port)
            bridges.append(bridge)
            if start:
                bridge.start()
            return api, bridge, hook, store, app.extensions["bridge"].config
        yield make
        for b in bridges:
            b.stop()
        api.hooks.join()


def jobs_by_rule(store) -> dict:
    out: dict = {}
    for d in store.list_deliveries(limit=1000):
        for j in d["jobs"]:
            out.setdefault(j["rule"], []).append(d["delivery"])
    return out
