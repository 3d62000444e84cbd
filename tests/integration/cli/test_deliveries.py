"""The operator commands on a real store: `cibridge deliveries [show]`, `replay --no-rematch`,
`retry` and `prune` need the state directory only (no secret, no valid rules file); `show` takes
an id prefix and shows statuses as the git host got them; `--repo` is a glob; every option of
every command says what it does.

Input: a real SQLite file (and a PostgreSQL schema) filled through `Store`, the click commands
run in-process. Output: their exit codes and text.
"""
from __future__ import annotations

import json
import textwrap

import click
import pytest
from click.testing import CliRunner

from bridge.cli.main import cli
from bridge.store import NewStatus, Store
from helpers.store import new_delivery, new_job, pg_schema

#: Invalid (a target that is a number) and naming secrets nobody set: `cibridge check` refuses it.
BROKEN_RULES = """\
sources:
  github: {provider: github, secrets: ["${env:NOBODY_SET_THIS}"]}
targets: 5
rules: []
"""


@pytest.fixture
def state(tmp_path):
    """A state directory whose SQLite store holds three deliveries (one dead job, one succeeded)."""
    directory = tmp_path / "var"
    store = Store.open(f"sqlite:///{directory}/bridge.db")
    fill(store)
    store.close()
    (tmp_path / "rules.yaml").write_text(BROKEN_RULES)
    return directory


def fill(store: Store) -> None:
    store.ingest(new_delivery("aaaa-1111", received_at=1000.0, repo="Acme/API"), [new_job("build")])
    store.ingest(new_delivery("aaaa-2222", received_at=1001.0, repo="acme/web"), [new_job("web")])
    store.ingest(new_delivery("bbbb-3333", received_at=1002.0, repo="other/thing"), [new_job("x")])
    dead, ok, _ = [c.id for c in store.claim("A", 3, lease_seconds=60, now=1003.0)]
    store.record_dead(dead, "A", "job not found", now=1004.0)
    from bridge.jobs import Run
    store.record_run(ok, "A", Run("r-2", state="succeeded"), now=1004.0)


def run(*args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env or {})
    return result.exit_code, result.output


def test_read_only_commands_need_neither_secrets_nor_a_valid_rules_file(state, tmp_path):
    rules = tmp_path / "rules.yaml"
    common = ["--rules", rules, "--state-dir", state]
    code, out = run("check", rules)
    assert code == 1 and "NOBODY_SET_THIS" in out            # the file really is broken

    code, out = run("deliveries", *common)
    assert code == 0, out
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["bbbb-3333", "aaaa-2222", "aaaa-1111"]
    code, out = run("deliveries", *common, "show", "aaaa-1111")
    assert code == 0 and "job 1  build -> ci  state dead" in out, out
    code, out = run("retry", *common, "1")
    assert (code, out) == (0, "job 1 queued again\n")
    code, out = run("replay", *common, "--no-rematch", "aaaa-2222")
    assert (code, out) == (0, "queued 1 job(s): 4\n")
    code, out = run("prune", *common, "--older-than", "1d")
    assert (code, out) == (0, "pruned 0 deliveries older than 1d\n")   # each has a job to run
    # Re-matching needs the rules themselves: that one says why, in the file's words.
    code, out = run("replay", *common, "aaaa-1111")
    assert code == 1 and "rules.yaml" in out and "Traceback" not in out


def test_no_rules_file_at_all_and_a_missing_state_directory(state, tmp_path):
    code, out = run("deliveries", "--rules", tmp_path / "nowhere.yaml", "--state-dir", state)
    assert code == 0 and "aaaa-1111" in out, out
    code, out = run("deliveries", "--state-dir", tmp_path / "nothing-here")
    assert code == 1 and f"no state directory {tmp_path / 'nothing-here'}" in out
    (tmp_path / "empty").mkdir()
    code, out = run("deliveries", "--state-dir", tmp_path / "empty")
    assert code == 1 and f"no database {tmp_path / 'empty' / 'bridge.db'}: nothing was stored" in out
    assert not (tmp_path / "empty" / "bridge.db").exists()          # and none was made


def test_the_database_url_comes_from_the_accepted_rules_with_only_its_own_secret(tmp_path):
    """settings.database_url of the snapshot in the state directory (what the service runs),
    a secret reference resolved; every other secret of the file stays unread."""
    with pg_schema() as url:
        store = Store.open(url)
        fill(store)
        store.close()
        state = tmp_path / "var"
        state.mkdir()
        (state / "rules.last-good.yaml").write_text(textwrap.dedent("""\
            settings: {database_url: "${env:TEST_DB_URL}"}
            sources:
              github: {provider: github, secrets: ["${env:NOBODY_SET_THIS}"]}
            """))
        code, out = run("deliveries", "--state-dir", state, "--format", "json",
                        env={"TEST_DB_URL": url})
        assert code == 0, out
        assert [r["delivery"] for r in json.loads(out)] == ["bbbb-3333", "aaaa-2222", "aaaa-1111"]
        code, out = run("deliveries", "--state-dir", state)
        assert code == 1
        assert ("settings.database_url of the last accepted rules: secret ${env:TEST_DB_URL}: "
                "environment variable TEST_DB_URL is not set or empty") in out


def test_show_takes_a_unique_prefix_and_names_the_candidates_of_an_ambiguous_one(state):
    code, out = run("deliveries", "--state-dir", state, "show", "bbbb")
    assert code == 0 and out.startswith("delivery bbbb-3333  source github"), out
    code, out = run("deliveries", "--state-dir", state, "show", "aaaa")
    assert code == 1
    assert out == "'aaaa' is ambiguous: it starts 2 delivery ids: aaaa-1111, aaaa-2222; give more of the id\n"
    code, out = run("deliveries", "--state-dir", state, "show", "a%")      # LIKE's wildcard is literal
    assert (code, out) == (1, "no delivery 'a%'\n")
    code, out = run("replay", "--state-dir", state, "--no-rematch", "bbbb-")
    assert code == 0 and out.startswith("queued 1 job(s)")


@pytest.mark.parametrize("pattern, expected", [
    ("acme/*", ["aaaa-2222", "aaaa-1111"]),           # any case: Acme/API is acme's too
    ("ACME/api", ["aaaa-1111"]),
    ("**/thing", ["bbbb-3333"]),
    ("acme/we[a-c]", ["aaaa-2222"]),
    ("nobody/*", []),
])
def test_repo_is_a_glob_of_any_case(state, pattern, expected):
    code, out = run("deliveries", "--state-dir", state, "--repo", pattern, "--format", "json")
    assert code == 0, out
    assert [r["delivery"] for r in json.loads(out)] == expected


def test_repo_glob_with_a_state_filter_and_a_limit(state):
    code, out = run("deliveries", "--state-dir", state, "--repo", "acme/**", "--state", "dead",
                    "--limit", "1", "--format", "json")
    assert code == 0 and [r["delivery"] for r in json.loads(out)] == ["aaaa-1111"], out
    code, out = run("deliveries", "--state-dir", state, "--repo", "acme/[z-a]")
    assert code == 2 and "--repo" in out and "Traceback" not in out


def test_show_gives_the_state_the_git_host_got_and_its_answer(state):
    store = Store.open(f"sqlite:///{state}/bridge.db", create=False)
    try:
        gh, gl = store.ingest(new_delivery("cccc-4444", received_at=1005.0),
                              [new_job("gh"), new_job("gl")]).job_ids
        rows = [NewStatus(key=f"job:{job_id}:1:accepted", delivery_id="cccc-4444", job_id=job_id,
                          rule="web", source=source, provider=provider, repo="acme/web", sha="a" * 40,
                          ref="main", context=f"ci/{provider}", rank=11, state="running",
                          description="building on ci")
                 for job_id, source, provider in ((gh, "github", "github"), (gl, "gitlab", "gitlab"))]
        store.add_statuses(rows, now=1005.0)
        for claimed, code in zip(store.claim_statuses("d", 2, lease_seconds=60, now=1006.0), (201, 503)):
            store.record_status(claimed.id, "d", outcome="sent" if code == 201 else "retry", code=code,
                                answer=str(code) if code == 201 else "503 Service Unavailable",
                                retry_at=2000.0 if code == 503 else None, now=1007.0)
    finally:
        store.close()
    code, out = run("deliveries", "--state-dir", state, "show", "cccc")
    assert code == 0, out
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("status ")]
    # GitHub has no "running": it got (and shows) "pending". GitLab has "running".
    assert lines == ['status pending  ci/github  "building on ci"  -> sent (201)  attempts 1',
                     'status running  ci/gitlab  "building on ci"  -> waiting (503 Service Unavailable)'
                     '  attempts 1']
    code, out = run("deliveries", "--state-dir", state, "--format", "json", "show", "cccc")
    statuses = json.loads(out)["statuses"]
    assert [(s["state"], s["host_state"], s["received"]) for s in statuses] == [
        ("running", "pending", True), ("running", "running", False)]


def _options_without_help(command: click.Command, path: str) -> list[str]:
    found = [f"{path} {param.opts[0]}" for param in command.params
             if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()]
    if isinstance(command, click.Group):   # the top group loads its commands when asked (cli/lazy.py)
        for name in command.list_commands(click.Context(command)):
            found += _options_without_help(command.get_command(click.Context(command), name),
                                           f"{path} {name}")
    return found


def test_every_option_of_every_command_has_help_text():
    assert _options_without_help(cli, "cibridge") == []
    # The walk reaches the nested commands too.
    assert "deliveries" in cli.commands and "show" in cli.commands["deliveries"].commands
