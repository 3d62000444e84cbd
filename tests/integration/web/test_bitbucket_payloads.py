"""Every Bitbucket Cloud payload of shared/payloads, signed byte for byte as Bitbucket signs
(`X-Hub-Signature: sha256=<hex>`), through the app (reply, one stored row per change) and through
`cibridge explain --format json`, every field compared with Atlassian's event-payload docs: one
event per `push.changes[]` entry, branch or tag from `new.type`/`old.type` (`name` is short), a
null `old` is a new ref and a null `new` a deleted one (zeros in before/after), `new.target` is
the commit (also for annotated tags), at most 5 commits newest first with `truncated`, no file
lists, the actor's `nickname` (older payloads: `username`)."""
from __future__ import annotations

import json

import pytest
from helpers.hosts import ZERO, comparable, event, explain_json, host_headers, signed
from helpers.payloads import payload_files, payloads_dir
from helpers.rules import HOSTS_RULES

from bridge.providers import bitbucket

AMUNIZ = ["https://bitbucket.org/amuniz/test-repos.git"]
TEMP = ["https://bitbucket.org/cloudbeers/temp.git"]
FOO = ["https://bitbucket.org/brydzewski/foo.git"]


def bb(delivery, kind, repo, ref, **fields):
    return event("bitbucket", delivery, kind, repo, ref, **fields)


MULTI = "a742f122-2084-52a7-b356-d2a958570b2c"
EXPECTED = {
    "bitbucket/repo_push__jenkins-update.json": [bb(
        "338e1590-d06f-59be-9514-de431eaaa8d2", "push", "cloudbeers/temp", "refs/heads/main",
        before="501bf5b99365d1d870882254b9360c17172bda0e", after="e42fac24456e4a56f1b7f9358afc3070e3b7ddec",
        commits=["e42fac24456e4a56f1b7f9358afc3070e3b7ddec"], pusher="stephenc", clone_urls=TEMP,
        head_message="Jenkinsfile created online with Bitbucket")],
    "bitbucket/repo_push__jenkins-multiple-changes.json": [
        bb(MULTI, "push", "cloudbeers/temp", "refs/heads/main",
           before="fc4d1ce2853b6f1ac0d0dbad643d17ef4a6e0be7", after="325d37697849f4b1fe42cb19c20134af08e03a82",
           commits=["325d37697849f4b1fe42cb19c20134af08e03a82"], pusher="stephenc", clone_urls=TEMP,
           head_message="typo\n"),
        bb(MULTI + "+2", "push", "cloudbeers/temp", "refs/heads/manchu",
           before=ZERO, after="e22fcb49645b4586a845938afac5eb3ac1950586",
           commits=["e22fcb49645b4586a845938afac5eb3ac1950586", "fc4d1ce2853b6f1ac0d0dbad643d17ef4a6e0be7",
                    "79ea16c6cee7f15c66d0ee7cfa725f8ae6c8b86f", "5449b752db4fa7ca0e2329d7f70122e2a82856cc",
                    "1986c228494671574242f99b62d1a00a4bfb69a5"],
           complete=False, pusher="stephenc", clone_urls=TEMP, head_message="Alt universe change\n"),
        bb(MULTI + "+3", "tag", "cloudbeers/temp", "refs/tags/v0.1",
           before=ZERO, after="1986c228494671574242f99b62d1a00a4bfb69a5", complete=False,
           pusher="stephenc", clone_urls=TEMP,
           head_message="Merged in foo (pull request #2)\n\nREADME.md edited online with Bitbucket\n")],
    "bitbucket/repo_push__jenkins-tag-create.json": [bb(
        "d7cc2913-bd59-50cc-a6ab-3f6c7d5588e1", "tag", "acme/tds.cm.maven.plugins-java", "refs/tags/test",
        before=ZERO, after="fee1dcdb330d1318502f303ccd4792531c28dc8e", complete=False, pusher="nfalco79",
        clone_urls=["https://bitbucket.org/acme/tds.cm.maven.plugins-java.git"],
        head_message="Defect RCBA-13 Maven plugin permits uppercase letters in addUniqueConstraint\n\n"
                     "Use a better log message in case of violation of changeset.\n")],
    "bitbucket/repo_push__jenkins-empty-changes.json": "the push lists no changes",
    "bitbucket/repo_push__jenkins-branch-create-slash.json": [bb(
        "d9dee1c6-cd58-5cd9-b1a7-f5a9f4d24eba", "push", "amuniz/test-repos", "refs/heads/feature/test",
        before=ZERO, after="174561d625c9623b60d8aba09b7f08ddc9df45cd",
        commits=["174561d625c9623b60d8aba09b7f08ddc9df45cd", "e43fdffe2def75053da30efa8204d0317a0b932a",
                 "bf4f4ce8a3a8d5c7dbfe7d609973a81a6c6664cf", "8d0fa145bde5151f1d103ab1c3dc1033e6ec4ac1"],
        pusher="Nikolas Falco", clone_urls=AMUNIZ, head_message="Add simple pipeline\n")],
    "bitbucket/repo_push__jenkins-branch-delete.json": [bb(
        "56489391-e19a-5e7f-842c-26bb8f6bc0eb", "delete", "amuniz/test-repos", "refs/heads/feature/test",
        before="174561d625c9623b60d8aba09b7f08ddc9df45cd", after=ZERO, complete=False,
        pusher="Nikolas Falco", clone_urls=AMUNIZ)],
    "bitbucket/repo_push__jenkins-force-truncated.json": [bb(
        "ceaf1644-f9f0-5702-a8e0-5f5f13b25347", "push", "amuniz/test-repos", "refs/heads/feature/issue-819",
        before="a10199272451f4c7c5edced2d40b5d6f2f6f5fa3", after="5ecffa3874e96920f24a2b3c0d0038e47d5cd1a4",
        commits=["5ecffa3874e96920f24a2b3c0d0038e47d5cd1a4", "c1fa9a169b6053b135f400d042a32d3b4952adf9",
                 "5e13458e76a69ac3ed03925dc58d519f3bdc275f", "e43fdffe2def75053da30efa8204d0317a0b932a",
                 "bf4f4ce8a3a8d5c7dbfe7d609973a81a6c6664cf"],
        complete=False, forced=True, pusher="Nikolas Falco", clone_urls=AMUNIZ,
        head_message="Test pipeline for issue JENKINS-75182\n")],
    "bitbucket/repo_push__jenkins-annotated-tag.json": [bb(
        "87d3ec51-267f-587a-92e7-fdc79acca70c", "tag", "amuniz/test-repos", "refs/tags/test-tag",
        before=ZERO, after="7ef5981d59145c3ed300b1ab77b93907d33abe59", complete=False,
        pusher="Nikolas Falco", clone_urls=AMUNIZ, head_message="Test pipeline for issue JENKINS-75182\n")],
    "bitbucket/repo_push__jenkins-tag-delete.json": [bb(
        "220b930e-e3be-5a21-b1c3-813286886288", "delete", "amuniz/test-repos", "refs/tags/test",
        before="174561d625c9623b60d8aba09b7f08ddc9df45cd", after=ZERO, complete=False,
        pusher="Nikolas Falco", clone_urls=AMUNIZ)],
    "bitbucket/repo_push__jenkins-signed.json": [bb(
        "88c0dea0-fc31-550d-ad42-d93a3d37642d", "push", "nfalco79/test-repos", "refs/heads/feature/webhook",
        before=ZERO, after="d7f300a32270053bdfd97a6d64113f58202c33e7",
        commits=["d7f300a32270053bdfd97a6d64113f58202c33e7", "174561d625c9623b60d8aba09b7f08ddc9df45cd",
                 "e43fdffe2def75053da30efa8204d0317a0b932a", "bf4f4ce8a3a8d5c7dbfe7d609973a81a6c6664cf",
                 "8d0fa145bde5151f1d103ab1c3dc1033e6ec4ac1"],
        pusher="Nikolas Falco", clone_urls=["https://bitbucket.org/nfalco79/test-repos.git"],
        head_message="Test for webhook signature\n")],
    "bitbucket/repo_push__goscm-branch.json": [bb(
        "195574a0-c6f8-56a6-99cc-fc9eb223703a", "push", "brydzewski/foo", "refs/heads/master",
        before="40e7580cf11311d84a6e5e97e2cbba6df1675750", after="141977fedf5cf35aa290ac87d4b5177ac4cd9de1",
        commits=["141977fedf5cf35aa290ac87d4b5177ac4cd9de1"], pusher="brydzewski", clone_urls=FOO,
        head_message="Update README\n")],
    "bitbucket/repo_push__goscm-branch-create.json": [bb(
        "a73a9191-6ca3-5735-844a-6380bee58813", "push", "brydzewski/foo", "refs/heads/develop",
        before=ZERO, after="141977fedf5cf35aa290ac87d4b5177ac4cd9de1",
        commits=["141977fedf5cf35aa290ac87d4b5177ac4cd9de1", "40e7580cf11311d84a6e5e97e2cbba6df1675750"],
        pusher="brydzewski", clone_urls=FOO, head_message="Update README\n")],
    # A tag named like a branch path: new.type says tag, so refs/tags/feature/x.
    "bitbucket/repo_push__goscm-tag-create-slash.json": [bb(
        "f43e0134-3243-516c-93db-90448cddc7eb", "tag", "brydzewski/foo", "refs/tags/feature/x",
        before=ZERO, after="141977fedf5cf35aa290ac87d4b5177ac4cd9de1", complete=False,
        pusher="brydzewski", clone_urls=FOO, head_message="Update README\n")],
    "bitbucket/repo_push__woodpecker.json": [bb(
        "8bb6e7dd-499e-58b7-9d8f-ca953ba42dcb", "push", "martinherren1984/publictestrepo", "refs/heads/main",
        before="a51241ae1f00cbe728930db48e890b18fd527f99", after="c14c1bb05dfb1fdcdf06b31485fff61b0ea44277",
        commits=["c14c1bb05dfb1fdcdf06b31485fff61b0ea44277"], pusher="Martin Herren",
        clone_urls=["https://bitbucket.org/martinherren1984/publictestrepo.git"], head_message="a\n")],
    # The docs' example: placeholder names, and a repository html link on api.bitbucket.org.
    "bitbucket/repo_push__docs-example.json": [bb(
        "3126a251-2b54-58f2-9468-b984b72c06ab", "push", "team_name/repo_name", "refs/heads/name-of-branch",
        before="1e65c05c1d5171631d92438a13901ca7dae9618c", after="709d658dc5b6d6afcd46049c2f332ee3f515a67d",
        commits=["03f4a7270240708834de475bcf21532d6134777e"], pusher="emmap1",
        clone_urls=["https://api.bitbucket.org/bitbucket/bitbucket.git"], head_message="new commit message\n")],
}

FILES = payload_files("bitbucket")
RULE = {"push": "every-branch", "tag": "tags", "delete": "deletions"}


def test_the_table_covers_every_payload():
    assert sorted(EXPECTED) == sorted(FILES)


@pytest.mark.parametrize("rel", FILES)
def test_each_payload_through_the_app_and_explain(make_app, write_rules, tmp_path, rel):
    app, store = make_app(HOSTS_RULES)
    body, headers = signed("bitbucket", rel)
    resp = app.test_client().post("/hooks/bitbucket", data=body, headers=headers)
    data = resp.get_json()
    expected = EXPECTED[rel]
    explained = explain_json(write_rules(HOSTS_RULES, name="explain.yaml"), "bitbucket", rel, tmp_path)
    if isinstance(expected, str):
        assert (resp.status_code, data["ignored"]) == (200, expected)
        assert explained["ignored"] == expected and explained["events"] == []
        return
    assert resp.status_code == 202, data
    assert [comparable(e) for e in explained["events"]] == expected
    assert explained["event"] == explained["events"][0]
    assert [[r["name"] for r in m["rules"] if r["matched"]] for m in explained["matches"]] == \
        [[RULE[e["kind"]]] for e in expected]
    assert data["delivery"] == expected[0]["delivery_id"]
    assert data["matched"] == list(dict.fromkeys(RULE[e["kind"]] for e in expected))
    for want in expected:
        stored = store.get_delivery(want["delivery_id"])
        assert comparable(stored["event"]) == want
        assert [j["rule"] for j in stored["jobs"]] == [RULE[want["kind"]]]
        kept = {k.lower(): v for k, v in stored["headers"].items()}
        assert "x-hub-signature" not in kept
        assert (kept["x-request-uuid"], kept["x-event-key"]) == (expected[0]["delivery_id"], "repo:push")


def test_three_changes_reply_and_jobs(make_app):
    app, store = make_app(HOSTS_RULES)
    body, headers = signed("bitbucket", "bitbucket/repo_push__jenkins-multiple-changes.json")
    data = app.test_client().post("/hooks/bitbucket", data=body, headers=headers).get_json()
    assert [(e["delivery"], e["ref"], e["matched"]) for e in data["events"]] == [
        (MULTI, "refs/heads/main", ["every-branch"]), (MULTI + "+2", "refs/heads/manchu", ["every-branch"]),
        (MULTI + "+3", "refs/tags/v0.1", ["tags"])]
    assert [j["request"]["parameters"] for j in data["jobs"]] == [
        {"SHA": "325d37697849f4b1fe42cb19c20134af08e03a82", "BRANCH": "main"},
        {"SHA": "e22fcb49645b4586a845938afac5eb3ac1950586", "BRANCH": "manchu"},
        {"TAG": "v0.1"}]
    # Bitbucket resends the same delivery on a 5xx: every change is known already.
    again = app.test_client().post("/hooks/bitbucket", data=body, headers=headers)
    assert again.status_code == 200 and again.get_json()["duplicate_of"] == MULTI
    assert len(store.list_deliveries()) == 3


def test_one_change_already_built_is_deduplicated_alone(make_app):
    app, store = make_app(HOSTS_RULES)
    body, headers = signed("bitbucket", "bitbucket/repo_push__jenkins-multiple-changes.json")
    payload = json.loads(body)
    first = dict(payload, push={"changes": payload["push"]["changes"][:1]})
    one = json.dumps(first).encode()
    one_headers = signed_body(one, headers, "first-only")
    assert app.test_client().post("/hooks/bitbucket", data=one, headers=one_headers).status_code == 202
    data = app.test_client().post("/hooks/bitbucket", data=body, headers=headers).get_json()
    assert data["events"][0]["duplicate_of"] == "first-only"
    assert [j["rule"] for j in data["jobs"]] == ["every-branch", "tags"]


def signed_body(body: bytes, headers: dict, delivery: str) -> dict:
    return host_headers("bitbucket", body, {**headers, "X-Request-UUID": delivery})


def test_commit_fields_as_atlassian_documents_them(write_rules, tmp_path):
    data = explain_json(write_rules(HOSTS_RULES), "bitbucket", "bitbucket/repo_push__jenkins-update.json",
                        tmp_path)
    assert data["event"]["commits"] == [{
        "id": "e42fac24456e4a56f1b7f9358afc3070e3b7ddec", "message": "Jenkinsfile created online with Bitbucket",
        "author": "Stephen Connolly", "timestamp": "2017-03-03T17:14:49+00:00", "added": [], "modified": [],
        "removed": [], "has_files": False}]
    assert data["files"]["source"] == "unknown"        # no file lists: path filters use the mirror


def test_the_documented_signature_vector():
    vector = json.loads((payloads_dir() / "signature_vectors.json").read_text())["bitbucket_cloud_jenkins"]
    body = (payloads_dir() / vector["file"]).read_bytes()
    assert len(body) == vector["file_bytes"]
    bitbucket.verify({"X-Hub-Signature": vector["X-Hub-Signature"]}, body, [vector["secret"].encode()])
    assert bitbucket.signature(body, vector["secret"].encode()) == {"X-Hub-Signature": vector["X-Hub-Signature"]}
