"""`cibridge explain`'s `files` answer is the dispatcher's: the same source, files and reason as
the changed-files chain gives for every shared payload (a tag, a deleted ref, a new ref, a
capped list), offline up to the point where the dispatcher would fetch into its mirror."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from werkzeug.datastructures import Headers
from helpers.rules import BASE_RULES
from helpers.payloads import load_payload, payload_files, payloads_dir

from bridge.cli.main import cli
from bridge.dispatch.changes import resolve_changed_files
from bridge.dispatch.mirror import Mirrors
from bridge.events import Event
from bridge.providers import github

RULES = BASE_RULES + """\
  - name: src
    on: {repo: "**", branches: ["**"], paths: ["src/**"]}
    run: {target: mem}
"""


def explain(rules, rel, tmp_path) -> dict:
    _, headers = load_payload(rel)
    hfile = tmp_path / "headers.json"
    hfile.write_text(json.dumps(headers))
    done = CliRunner().invoke(cli, ["explain", "--rules", str(rules), "--source", rel.split("/")[0],
                                    "--headers", str(hfile), "--format", "json",
                                    str(payloads_dir() / rel)], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


@pytest.mark.parametrize("rel", payload_files("github") + payload_files("gitlab"))
def test_explain_gives_the_dispatchers_reason(write_rules, tmp_path, rel):
    data = explain(write_rules(RULES), rel, tmp_path)
    if data["event"] is None:
        return
    event = Event.from_dict(data["event"])
    # The dispatcher's chain, with a mirror that may fetch from nowhere (no URL, no host).
    chain = resolve_changed_files(event, Mirrors(tmp_path / "m"), hosts=())
    files = data["files"]
    assert files["source"] == chain.source, (files, chain)
    assert files["files"] == (sorted(chain.files) if chain.files is not None else None)
    if chain.source == "unknown":
        # Up to the mirror: the same words; then what the dispatcher would do.
        assert files["reason"].split("; ")[0] == chain.reason.split("; ")[0], (files, chain)
        assert files["reason"].endswith("the dispatcher fetches them into its git mirror "
                                        "(--resolve-files does too)")
    else:
        assert files["reason"] == chain.reason
    assert files["reason"] not in ("the payload's commit lists are complete",
                                   "the payload's commit lists are incomplete")


@pytest.mark.parametrize("rel, source, reason", [
    ("github/push__goscm-tag-create.json", "none", "path filters do not apply to tags"),
    ("gitlab/tag_push_hook__docs.json", "none", "path filters do not apply to tags"),
    ("github/push__goscm-branch-delete.json", "none", "the ref was deleted: no files changed"),
    ("gitlab/push_hook__docs.json", "unknown", "the payload's commit list is capped by the host; "
                                               "the dispatcher fetches them"),
    ("github/push__octokit-new-branch.json", "payload", "the payload lists all 1 pushed commits"),
    ("github/push__f110-nine-commits.json", "payload", "the payload lists all 9 pushed commits"),
])
def test_explain_files_reason_per_kind_of_push(write_rules, tmp_path, rel, source, reason):
    data = explain(write_rules(RULES), rel, tmp_path)
    assert data["files"]["source"] == source and data["files"]["reason"].startswith(reason), \
        data["files"]



def test_a_github_list_at_the_cap_is_not_trusted():
    # GitHub's provider decides it at normalize time: a list of 2,048 commits may have been cut.
    body, headers = load_payload("github/push__f110-nine-commits.json")
    payload = json.loads(body)
    payload["commits"] = [{**payload["commits"][0], "id": f"{i:040x}"} for i in range(2048)]
    capped = github.normalize(Headers(headers), json.dumps(payload).encode(), source="github",
                              delivery_id="d")
    assert capped.commits_complete is False
    assert capped.changed_files() is None       # the rules ask the dispatcher, as the chain says
    chain = resolve_changed_files(capped, None)
    assert chain.source == "unknown" and chain.reason.startswith("the payload's commit list is capped")
    payload["commits"] = payload["commits"][:2047]
    below = github.normalize(Headers(headers), json.dumps(payload).encode(), source="github",
                             delivery_id="d")
    assert below.commits_complete is True and below.changed_files() is not None
