"""rules.yaml `clone_url` and `settings.mirrors`: `cibridge check` refuses the clone URLs every fetch
refuses, password shapes redacted, clone tokens need https, mirror settings and their problems, the
dispatcher's fetch timeout and `mirrors prune` defaults taken from them, no secret read by prune."""
from __future__ import annotations

import socket
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from helpers.git import ISOLATED, Upstream, push

from bridge.cli.main import cli
from bridge.config.load import load_config
from bridge.dispatch.mirror import Mirrors
from bridge.providers.clone import clone_url_problem, redact
from bridge.errors import ConfigError
from bridge.events import Commit
from bridge.policies import MirrorPolicy
from bridge.dispatch.changes import make_path_decider
from helpers.clone_rules import rules


# --- rules.yaml: clone_url and settings.mirrors ---------------------------------------------------


@pytest.mark.parametrize("clone_url, message", [
    ("'ext::sh -c touch% /tmp/pwned'", "refused clone URL 'ext::sh -c touch% /tmp/pwned': "
                                       "empty or contains whitespace or control characters"),
    ("'ext::ssh-helper'", "refused clone URL 'ext::ssh-helper': remote helpers ('<transport>::') "
                          "are not allowed"),
    ("http://git.example.com/x.git", "refused clone URL 'http://git.example.com/x.git': scheme "
                                     "'http' is not one of https, ssh, git, file"),
    ("relative/repo.git", "refused clone URL 'relative/repo.git': not a URL and not an absolute path"),
    ("'ssh://-oProxyCommand=x/repo'", "a host, user or path starting with '-'"),
    ("'git@host:${repos}.git'", "clone_url may contain only ${repo}, not ${repos} "
                                "(did you mean '${repo}'?) (credentials go in clone_token)"),
    ("'https://${repo}.example.com/x.git'", "clone_url may use ${repo} in its path only"),
    ("'https://bot:hunter2@git.example.com/x.git'", "clone_url must not carry a password"),
    ("'https://bot:hun/ter2@git.example.com/x.git'", "clone_url must not carry a password"),
    ("'https://ghp_hunter2@github.com/${repo}.git'", "clone_url must not carry a password"),
    ("'https://@github.com/${repo}.git'", "clone_url must not carry a password"),
    ("'ssh://git:hunter2@git.example.com/x.git'", "clone_url must not carry a password"),
    ("'ssh://git:hun/ter2@git.example.com/x.git'", "clone_url must not carry a password"),
    ("[a, b]", "clone_url must be a URL"),
])
def test_bridge_check_refuses_the_clone_urls_every_fetch_refuses(tmp_path, clone_url, message):
    path = tmp_path / "rules.yaml"
    path.write_text(rules(f"  gl:\n    provider: gitlab\n    secrets: ['${{env:S}}']\n"
                          f"    clone_url: {clone_url}\n"))

    done = CliRunner().invoke(cli, ["check", str(path)], env={"S": "x"})

    assert done.exit_code == 1
    [problem] = [line for line in done.output.splitlines() if line.startswith("rules.yaml:")]
    assert problem.startswith("rules.yaml:8: source 'gl': ") and message in problem, problem
    assert "hunter2" not in done.output


def test_clone_url_checks_agree_with_the_fetch():
    for ok in ("https://github.com/${repo}.git", "git@github.com:${repo}.git",
               "ssh://git@gitlab.example.com:2222/${repo}.git", "file:///srv/git/${repo}.git",
               "git://127.0.0.1/x", "/srv/git/x.git"):
        assert clone_url_problem(ok) is None, ok


def test_redact_hides_every_password_shape():
    for url, shown in [
            ("https://bot:p/ss@github.com/x.git", "https://***@github.com/x.git"),
            ("https://ghp_abc123@github.com/acme/api.git", "https://***@github.com/acme/api.git"),
            ("https://u:p@ss@h/x", "https://***@h/x"),
            ("https://u:a/b@c/d@h/x?y#z", "https://***@h/x?y#z"),
            ("ssh://git:p/ss@host/x", "ssh://***@host/x"),
            ("https://github.com/acme/api.git", "https://github.com/acme/api.git"),
            ("git@github.com:acme/api.git", "git@github.com:acme/api.git")]:
        assert redact(url) == shown
        assert redact(f"fatal: unable to access '{url}/': no") == f"fatal: unable to access '{shown}/': no"
    assert redact("from https://a:b/c@h/x and https://d:e@i/y") == "from https://***@h/x and https://***@i/y"


def test_clone_token_needs_an_https_clone_url(tmp_path):
    text = rules("  gl:\n    provider: gitlab\n    secrets: ['${env:S}']\n"
                 "    clone_url: git@gitlab.example.com:${repo}.git\n    clone_token: ${env:T}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "rules.yaml", text=text, environ={"S": "x", "T": "glpat-1"})
    assert err.value.problems == [
        "rules.yaml:9: source 'gl': clone_token is sent over https only: clone_url must be https:// "
        "without user info (for ssh, the service user's key is used)"]


def test_settings_mirrors(tmp_path):
    config = load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=rules(settings=(
        "settings:\n  mirrors: {fetch_timeout: 45s, max_size: 500M, max_age: 7d}\n")))
    assert config.settings.mirrors == MirrorPolicy(fetch_timeout=45, max_size=500 * 2**20,
                                                   max_age=7 * 86400)
    mirrors = Mirrors.for_settings(tmp_path / "state", config.settings)
    assert (mirrors.root, mirrors.fetch_timeout, mirrors.max_bytes, mirrors.max_age) == (
        tmp_path / "state" / "mirrors", 45, 500 * 2**20, 7 * 86400)
    defaults = load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=rules()).settings.mirrors
    assert defaults == MirrorPolicy(fetch_timeout=120, max_size=5 * 2**30, max_age=30 * 86400)
    assert load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=rules(
        settings="settings:\n  mirrors: {max_size: 1048576}\n")).settings.mirrors.max_size == 2**20


def test_settings_mirrors_problems(tmp_path):
    text = rules(settings="settings:\n  mirrors:\n    fetch_timout: 5s\n    max_size: lots\n"
                          "    max_age: 0\n    fetch_timeout: -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "rules.yaml", text=text, environ={"S": "x"})
    assert err.value.problems == [
        "rules.yaml:10: unknown key 'fetch_timout' in settings.mirrors (did you mean 'fetch_timeout'?)",
        "rules.yaml:11: settings.mirrors.max_size: not a size: 'lots' (use e.g. 5G, 500M)",
        "rules.yaml:12: settings.mirrors.max_age: '0' is not positive",
        "rules.yaml:13: settings.mirrors.fetch_timeout: '-1' is negative"]
    # YAML's .nan and .inf are floats: a NaN timeout never expires and a NaN age never evicts.
    text = rules(settings="settings:\n  mirrors:\n    fetch_timeout: .nan\n    max_age: .inf\n"
                          "    max_size: .nan\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "rules.yaml", text=text, environ={"S": "x"})
    assert err.value.problems == [
        "rules.yaml:10: settings.mirrors.fetch_timeout: 'nan' is not a finite duration",
        "rules.yaml:11: settings.mirrors.max_age: 'inf' is not a finite duration",
        "rules.yaml:12: settings.mirrors.max_size: not a size: nan (use e.g. 5G, 500M)"]
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "rules.yaml", text=rules(settings="settings:\n  mirror: {}\n"),
                    environ={"S": "x"})
    assert err.value.problems == [
        "rules.yaml:9: unknown key 'mirror' in settings (did you mean 'mirrors'?)"]


def test_the_dispatcher_uses_settings_mirrors_fetch_timeout(tmp_path):
    with socket.socket() as silent:         # accepts connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"git://127.0.0.1:{silent.getsockname()[1]}/acme/api.git"
        config = load_config(tmp_path / "rules.yaml", environ={"S": "x"}, text=rules(
            extra_source=f"    clone_url: {url}\n",
            settings="settings:\n  mirrors: {fetch_timeout: 1s}\n"))
        event = push("https://127.0.0.1:1/x.git", "1" * 40, "2" * 40, provider="github")
        event = replace(event, source="gh", clone_urls=(),
                                   commits=(Commit(id="2" * 40, added=("a",)),))
        job = SimpleNamespace(event=event, path_filter={"paths": ["src/**"],
                                                                  "on_unknown_files": "skip"})
        started = time.monotonic()

        run, why = make_path_decider(tmp_path / "state", config)(job)

    assert not run and f"fetching from {url} timed out after 1s" in why
    assert time.monotonic() - started < 60


def test_mirrors_prune_takes_its_defaults_from_settings(tmp_path):
    up = Upstream(tmp_path / "up", f"file://{tmp_path / 'up'}")
    before, after = up.commit({"a": "1"}), up.commit({"b": "1"})
    state = tmp_path / "state"
    Mirrors(state / "mirrors", env=ISOLATED, now=lambda: time.time() - 3 * 86400).changed_files(
        push(up.url, before, after), url=up.url)
    path = tmp_path / "rules.yaml"
    runner = CliRunner()
    path.write_text(rules(settings="settings:\n  mirrors: {max_age: 4d}\n"))
    kept = runner.invoke(cli, ["mirrors", "prune", "--state-dir", str(state), "--rules", str(path)],
                         env={"S": "x"})
    assert kept.exit_code == 0 and kept.output == "0 mirror(s) evicted\n"
    path.write_text(rules(settings="settings:\n  mirrors: {max_age: 2d}\n"))
    pruned = runner.invoke(cli, ["mirrors", "prune", "--state-dir", str(state)],
                           env={"S": "x", "BRIDGE_RULES": str(path)})
    assert pruned.exit_code == 0 and pruned.output == f"evicted {up.url}\n1 mirror(s) evicted\n"


def test_mirrors_prune_reads_no_secret(tmp_path):
    # Pruning needs settings.mirrors only: secrets it cannot (and must not) read stop nothing.
    up = Upstream(tmp_path / "up", f"file://{tmp_path / 'up'}")
    before, after = up.commit({"a": "1"}), up.commit({"b": "1"})
    state = tmp_path / "state"
    Mirrors(state / "mirrors", env=ISOLATED, now=lambda: time.time() - 3 * 86400).changed_files(
        push(up.url, before, after), url=up.url)
    path = tmp_path / "rules.yaml"
    path.write_text(rules(settings="settings:\n  mirrors: {max_age: 2d}\n").replace(
        "${env:S}", "${credential:gh-secret}") + "  admin_token: ${env:BRIDGE_TEST_NO_SUCH_VAR}\n")
    env = {"BRIDGE_RULES": str(path), "CREDENTIALS_DIRECTORY": None,
           "BRIDGE_TEST_NO_SUCH_VAR": None}

    pruned = CliRunner().invoke(cli, ["mirrors", "prune", "--state-dir", str(state)], env=env)

    assert pruned.exit_code == 0, pruned.output
    assert pruned.output == f"evicted {up.url}\n1 mirror(s) evicted\n"
    # Any other problem in rules.yaml is shown; both limits on the command line need no rules.
    path.write_text(path.read_text().replace("kind: memory", "kind: memroy"))
    broken = CliRunner().invoke(cli, ["mirrors", "prune", "--state-dir", str(state)], env=env)
    assert broken.exit_code == 1 and "rules.yaml:" in broken.output
    assert "nothing pruned" in broken.output and "--max-age and --max-size" in broken.output
    explicit = CliRunner().invoke(cli, ["mirrors", "prune", "--state-dir", str(state),
                                        "--max-age", "1d", "--max-size", "1G"], env=env)
    assert explicit.exit_code == 0 and explicit.output == "0 mirror(s) evicted\n"
