"""Providers on real payloads: signature and token checks, normalization into Event/Ignored, and
the bad-input table (every refusal is VerificationFailed or BadPayload, with its exact message)."""
from __future__ import annotations

import json

import pytest
from werkzeug.datastructures import Headers

from bridge.errors import BadPayload, VerificationFailed
from bridge.events import ZERO_SHA, Event, Ignored
from bridge.providers import PROVIDERS, get_provider, github, gitlab
from bridge.providers.body import parse_json
from helpers.payloads import (github_form_body, gitlab_token_headers, load_payload, payload_files, payloads_dir,
                     sign_github, signed_request)

SECRET = b"s3cret-for-tests"
OLD_SECRET = b"the-previous-secret"


def normalize(provider: str, rel_path: str):
    body, headers = signed_request(provider, rel_path, SECRET)
    headers = Headers(headers)
    mod = get_provider(provider)
    mod.verify(headers, body, [SECRET])
    return mod.normalize(headers, body, source=f"{provider}-src", delivery_id=mod.delivery_id(headers) or "none")


# --- registry ---------------------------------------------------------------------------------

def test_registry_and_did_you_mean():
    assert PROVIDERS == {"github": github, "gitlab": gitlab}
    assert get_provider("gitlab") is gitlab
    with pytest.raises(KeyError) as exc:
        get_provider("githib")
    assert exc.value.args[0] == "unknown provider 'githib' (did you mean 'github'?); known providers: github, gitlab"


# --- signatures -------------------------------------------------------------------------------

def test_github_documented_signature_vector():
    vector = json.loads((payloads_dir() / "signature_vectors.json").read_text())["github_docs"]
    body = vector["payload_utf8"].encode("utf-8")
    assert sign_github(body, vector["secret"]) == {"X-Hub-Signature-256": vector["X-Hub-Signature-256"]}
    github.verify(Headers({"X-Hub-Signature-256": vector["X-Hub-Signature-256"]}), body,
                  [vector["secret"].encode()])
    with pytest.raises(VerificationFailed):
        github.verify(Headers({"X-Hub-Signature-256": vector["X-Hub-Signature-256"]}), body + b" ",
                      [vector["secret"].encode()])


def test_github_any_listed_secret_verifies_and_upper_case_hex_is_accepted():
    body, headers = signed_request("github", "github/push__goscm-branch.json", OLD_SECRET)
    github.verify(Headers(headers), body, [SECRET, OLD_SECRET])
    headers["X-Hub-Signature-256"] = "sha256=" + headers["X-Hub-Signature-256"][7:].upper()
    github.verify(Headers(headers), body, [OLD_SECRET])
    with pytest.raises(VerificationFailed, match="does not match"):
        github.verify(Headers(headers), body, [SECRET])


def test_gitlab_token_rotation_and_header_case():
    body, headers = signed_request("gitlab", "gitlab/push_hook__docs.json", OLD_SECRET)
    gitlab.verify(Headers(headers), body, [SECRET, OLD_SECRET])
    gitlab.verify(Headers({"x-gitlab-token": OLD_SECRET.decode()}), body, [OLD_SECRET])
    with pytest.raises(VerificationFailed, match="does not match"):
        gitlab.verify(Headers(headers), body, [SECRET])


def test_gitlab_non_ascii_token_compares_as_the_bytes_sent():
    secret = "tökén".encode("utf-8")
    gitlab.verify(Headers(gitlab_token_headers(secret)), b"{}", [secret])


BODY = b'{"ref": "refs/heads/main"}'
GOOD = sign_github(BODY, SECRET)["X-Hub-Signature-256"]


@pytest.mark.parametrize("headers, message", [
    ({}, "X-Hub-Signature-256 is missing"),
    ({"X-Hub-Signature-256": ""}, "X-Hub-Signature-256 is missing"),
    ({"X-Hub-Signature": "sha1=" + "0" * 40},
     "X-Hub-Signature-256 is missing; the SHA-1 X-Hub-Signature alone is not accepted"),
    ({"X-Hub-Signature-256": GOOD[7:]}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": "sha1=" + GOOD[7:]}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": GOOD[:-1]}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": GOOD + "0"}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": GOOD[:-1] + "g"}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": GOOD[:-1] + "é"}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": GOOD[:-1] + "٣"}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": " " + GOOD}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, "X-Hub-Signature-256 does not match the body"),
], ids=["missing", "empty", "sha1-only", "no-prefix", "sha1-prefix", "short", "long", "non-hex",
        "non-ascii", "arabic-digit", "leading-space", "wrong"])
def test_github_bad_signatures(headers, message):
    with pytest.raises(VerificationFailed) as exc:
        github.verify(Headers(headers), BODY, [SECRET])
    assert exc.value.message == message
    assert exc.value.status == 401
    assert SECRET.decode() not in str(exc.value) and GOOD[7:] not in str(exc.value)


@pytest.mark.parametrize("headers, message", [
    ({}, "X-Gitlab-Token is missing"),
    ({"X-Gitlab-Token": ""}, "X-Gitlab-Token is missing"),
    ({"X-Gitlab-Token": SECRET.decode()[:-1]}, "X-Gitlab-Token does not match"),
    ({"X-Gitlab-Token": SECRET.decode() + " "}, "X-Gitlab-Token does not match"),
    ({"X-Gitlab-Token": "tökén"}, "X-Gitlab-Token does not match"),
    ({"X-Gitlab-Token": "token€"}, "X-Gitlab-Token is malformed"),
    ({"X-Hub-Signature-256": GOOD}, "X-Gitlab-Token is missing"),
], ids=["missing", "empty", "short", "trailing-space", "non-ascii", "beyond-latin-1", "github-header"])
def test_gitlab_bad_tokens(headers, message):
    with pytest.raises(VerificationFailed) as exc:
        gitlab.verify(Headers(headers), BODY, [SECRET])
    assert exc.value.message == message
    assert SECRET.decode() not in str(exc.value)


def test_secret_headers_and_delivery_ids():
    assert github.SECRET_HEADERS == ("X-Hub-Signature-256", "X-Hub-Signature")
    assert gitlab.SECRET_HEADERS == ("X-Gitlab-Token",)
    _, gh = load_payload("github/push__goscm-branch.json")
    assert github.delivery_id(Headers(gh)) == "cbfc4261-9fbb-55ca-ae5c-e6c850bea81d"
    assert github.event_name(Headers(gh)) == "push"
    assert github.delivery_id(Headers({})) is None
    _, gl = load_payload("gitlab/push_hook__docs.json")
    assert gitlab.delivery_id(Headers(gl)) == "205becdb-40ab-5677-9d57-cc399650266d"   # Idempotency-Key
    del gl["Idempotency-Key"]
    assert gitlab.delivery_id(Headers(gl)) == "8a7531f0-bd13-56db-925c-31784e790c2b"   # X-Gitlab-Event-UUID
    assert gitlab.delivery_id(Headers({})) is None
    assert gitlab.event_name(Headers(gl)) == "Push Hook"


# --- every real payload -----------------------------------------------------------------------

@pytest.mark.parametrize("rel_path", payload_files("github") + payload_files("gitlab"))
def test_every_payload_normalizes_or_is_ignored(rel_path):
    provider = rel_path.split("/")[0]
    result = normalize(provider, rel_path)
    _, headers = load_payload(rel_path)
    event = headers.get("X-GitHub-Event") or headers.get("X-Gitlab-Event")
    if event in ("push", "Push Hook", "Tag Push Hook") or rel_path.startswith(("gitlab/system_hook__docs-push",
                                                                                 "gitlab/system_hook__docs-tag")):
        assert isinstance(result, Event)
        assert result.provider == provider and result.source == f"{provider}-src"
        assert result.ref.startswith(("refs/heads/", "refs/tags/"))
        assert result.ref.endswith("/" + result.ref_name)
        assert result.kind == ("delete" if result.deleted else "tag" if result.is_tag else "push")
        assert result.repo and result.clone_urls and result.default_branch and result.pusher
        assert result.delivery_id == (headers.get("X-GitHub-Delivery") or headers.get("Idempotency-Key"))
        assert Event.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    else:
        assert isinstance(result, Ignored) and result.reason


def test_github_ping_and_unhandled_events():
    assert normalize("github", "github/ping__octokit-org-hook.json") == Ignored("ping", event_name="ping")
    assert normalize("github", "github/pull_request__octokit-opened.json").reason == \
        "event 'pull_request' is not handled"
    assert normalize("github", "github/create__octokit-tag.json").reason == "event 'create' is not handled"


def test_github_branch_push_with_files():
    e = normalize("github", "github/push__goscm-branch.json")
    assert (e.kind, e.repo, e.ref, e.ref_name, e.branch, e.tag) == \
        ("push", "Codertocat/Hello-World", "refs/heads/master", "master", "master", "")
    assert e.before.startswith("a10867b1") and e.after == e.sha and e.sha.startswith("199eddf4")
    assert (e.created, e.deleted, e.forced, e.commits_complete) == (False, False, False, True)
    assert e.pusher == "Codertocat" and e.default_branch == "master"
    assert e.clone_urls == ("https://github.com/Codertocat/Hello-World.git", "git@github.com:Codertocat/Hello-World.git")
    assert e.head_message == "Update README" == e.commits[0].message
    assert e.commits[0].author == "Codertocat" and e.commits[0].has_files
    assert e.delivery_id == "cbfc4261-9fbb-55ca-ae5c-e6c850bea81d"


def test_github_nine_commits_aggregate_files():
    e = normalize("github", "github/push__f110-nine-commits.json")
    assert len(e.commits) == 9 and e.commits_complete and e.sha == e.after
    assert e.changed_files() is not None


def test_github_tag_delete():
    e = normalize("github", "github/push__octokit-tag-delete.json")
    assert (e.kind, e.ref, e.tag, e.branch) == ("delete", "refs/tags/simple-tag", "simple-tag", "")
    assert e.deleted and not e.created and e.after == ZERO_SHA and e.sha is None and e.commits == ()
    assert e.head_message == ""


def test_github_new_branch():
    e = normalize("github", "github/push__octokit-new-branch.json")
    assert (e.kind, e.branch, e.created, e.deleted, e.forced) == ("push", "master", True, False, False)
    assert e.before == ZERO_SHA and len(e.commits) == 1


def test_github_force_push_and_old_creates_are_not_forced():
    assert normalize("github", "github/push__woodpecker-force.json").forced is True
    assert normalize("github", "github/push__f110-force.json").forced is True
    # 2015 deliveries say forced: true on a create and a delete; neither rewrites history.
    created = normalize("github", "github/push__f110-branch-create.json")
    assert created.created and not created.forced
    deleted = normalize("github", "github/push__f110-branch-delete.json")
    assert deleted.kind == "delete" and not deleted.forced


def test_github_annotated_tag_builds_the_commit_not_the_tag_object():
    e = normalize("github", "github/push__f110-tag-create.json")
    assert (e.kind, e.tag, e.created) == ("tag", "v1.1", True)
    assert e.after.startswith("73eab2d3") and e.sha.startswith("3c6cd430")


def test_github_default_branch_falls_back_to_master_branch():
    body, headers = load_payload("github/push__goscm-branch.json")
    payload = json.loads(body)
    del payload["repository"]["default_branch"]
    payload["repository"]["master_branch"] = "trunk"
    e = github.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")
    assert e.default_branch == "trunk"


def test_github_capped_commit_list_is_incomplete():
    body, headers = load_payload("github/push__goscm-branch.json")
    payload = json.loads(body)
    payload["commits"] = payload["commits"] * 2048
    e = github.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")
    assert len(e.commits) == 2048 and e.commits_complete is False and e.changed_files() is None


def test_github_slash_in_names_and_only_prefix_decides():
    body, headers = load_payload("github/push__goscm-branch.json")
    for ref, kind, name in [("refs/heads/release/v1.2", "push", "release/v1.2"),
                            ("refs/tags/release/v1.2", "tag", "release/v1.2"),
                            ("refs/heads/refs/tags/x", "push", "refs/tags/x"),
                            ("refs/heads/v1.0", "push", "v1.0")]:
        payload = dict(json.loads(body), ref=ref)
        e = github.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")
        assert (e.kind, e.ref_name, e.is_branch, e.is_tag) == (kind, name, kind == "push", kind == "tag")
    payload = dict(json.loads(body), ref="refs/notes/commits")
    result = github.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")
    assert result == Ignored("ref 'refs/notes/commits' is neither a branch nor a tag", event_name="push")


def test_github_form_encoded_body():
    body, headers = load_payload("github/push__woodpecker-branch-org.json")
    form = github_form_body(body)
    headers.update(sign_github(form, SECRET))
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    github.verify(Headers(headers), form, [SECRET])
    e = github.normalize(Headers(headers), form, source="s", delivery_id="d")
    assert e == github.normalize(Headers(load_payload("github/push__woodpecker-branch-org.json")[1]), body,
                                 source="s", delivery_id="d")
    assert e.repo == "woodpecker-ci/woodpecker"
    # The JSON body signature does not cover the form body.
    with pytest.raises(VerificationFailed):
        github.verify(Headers({**headers, **sign_github(body, SECRET)}), form, [SECRET])


def test_gitlab_push_hook_capped_list():
    e = normalize("gitlab", "gitlab/push_hook__docs.json")
    assert (e.kind, e.repo, e.branch, e.pusher, e.default_branch) == ("push", "mike/diaspora", "master", "jsmith", "master")
    assert len(e.commits) == 2 and e.commits_complete is False and e.changed_files() is None
    assert e.sha == e.after and e.head_message == "fixed readme"
    assert e.clone_urls == ("http://example.com/mike/diaspora.git", "git@example.com:mike/diaspora.git")
    assert e.commits[0].added == ("CHANGELOG",) and e.commits[0].author == "Jordi Mallach"


def test_gitlab_subgroup_repo():
    e = normalize("gitlab", "gitlab/push_hook__goscm-subgroup.json")
    assert e.repo == "group1/group2/group3/grp2repo" and e.commits_complete and e.changed_files() == {"README.md"}


def test_gitlab_new_and_deleted_branch_from_zero_shas():
    created = normalize("gitlab", "gitlab/push_hook__goscm-branch-create.json")
    assert (created.kind, created.created, created.deleted) == ("push", True, False)
    deleted = normalize("gitlab", "gitlab/push_hook__goscm-branch-delete.json")
    assert (deleted.kind, deleted.created, deleted.deleted, deleted.sha) == ("delete", False, True, None)


def test_gitlab_tag_delete():
    e = normalize("gitlab", "gitlab/tag_push_hook__goscm-tag-delete.json")
    assert (e.kind, e.tag, e.deleted, e.sha) == ("delete", "v1.0.0", True, None)


def test_gitlab_annotated_tag_checkout_sha():
    e = normalize("gitlab", "gitlab/tag_push_hook__woodpecker-annotated-tag.json")
    assert (e.kind, e.tag, e.created) == ("tag", "v22", True)
    assert e.after.startswith("fabed3d9") and e.sha.startswith("16862e36")
    assert e.head_message == "Update main.go" and e.default_branch == "develop"


def test_gitlab_system_hook_push_has_no_file_lists():
    e = normalize("gitlab", "gitlab/system_hook__docs-push.json")
    assert (e.kind, e.repo, e.branch, e.pusher) == ("push", "mike/diaspora", "master", "John Smith")
    assert e.commits_complete and [c.has_files for c in e.commits] == [False]
    assert e.changed_files() is None
    # No listed commit is the checkout sha: the last listed one stands in.
    assert e.head_message == "Add simple search to projects in public area"


def test_gitlab_system_hook_tag_push():
    e = normalize("gitlab", "gitlab/system_hook__docs-tag-push.json")
    assert (e.kind, e.repo, e.tag, e.created) == ("tag", "jsmith/example", "v1.0.0", True)
    assert e.after.startswith("82b3d5ae") and e.sha.startswith("5937ac0a")


def test_gitlab_system_hook_non_pushes_are_ignored():
    assert normalize("gitlab", "gitlab/system_hook__docs-repository-update.json") == Ignored(
        "system hook 'repository_update' is not a push (its push event is)", event_name="System Hook")
    assert normalize("gitlab", "gitlab/system_hook__docs-merge-request-2017.json").reason == \
        "system hook event 'merge_request' is not handled"
    assert normalize("gitlab", "gitlab/merge_request_hook__docs-open.json").reason == \
        "event 'Merge Request Hook' is not handled"


def test_gitlab_repo_falls_back_to_repository_homepage():
    body, headers = load_payload("gitlab/push_hook__goscm-subgroup.json")
    payload = json.loads(body)
    del payload["project"]
    e = gitlab.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")
    assert e.repo == "group1/group2/group3/grp2repo"
    assert e.clone_urls == ("https://gitlab.com/group1/group2/group3/grp2repo.git",
                            "git@gitlab.com:group1/group2/group3/grp2repo.git")


# --- bad bodies -------------------------------------------------------------------------------

def python_int_error(digits: str) -> str:
    """What this Python says about an integer too long to convert (the text and the limit vary)."""
    try:
        int(digits)
    except ValueError as exc:
        return str(exc)
    raise AssertionError("no limit on integer digits in this Python")


DEEP = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize("body, message", [
    (b"", "body is not valid JSON: Expecting value (line 1, column 1)"),
    (b"{not json", "body is not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"),
    (b'{"a": 1', "body is not valid JSON: Expecting ',' delimiter (line 1, column 8)"),
    (b"[1, 2]", "JSON body is an array, not an object"),
    (b'"push"', "JSON body is a string, not an object"),
    (b"null", "JSON body is null, not an object"),
    (b"42", "JSON body is a number, not an object"),
    (DEEP, "JSON body is nested too deeply"),
    (b'{"ref": "\xff\xfe"}', "body is not valid UTF-8"),
    (b'{"ref": "\xed\xa0\x80"}', "body is not valid UTF-8"),   # a surrogate in UTF-8 form
    (b'{"ref": "\\ud800"}', "JSON body has a lone UTF-16 surrogate"),
    (b'{"ref": "\\ud800x"}', "JSON body has a lone UTF-16 surrogate"),
    (b'{"ref": "\\udc00"}', "JSON body has a lone UTF-16 surrogate"),
    (b'{"ref": "\\\\ud83d\\ude00"}', "JSON body has a lone UTF-16 surrogate"),   # escaped backslash, then a low half
    (b'{"n": NaN}', "JSON body has the non-standard constant 'NaN'"),
    (b'{"n": -Infinity}', "JSON body has the non-standard constant '-Infinity'"),
    # Python's own words (and its limit: sys.set_int_max_str_digits, PYTHONINTMAXSTRDIGITS).
    (b'{"n": ' + b"9" * 5000 + b"}", "body is not valid JSON: " + python_int_error("9" * 5000)),
], ids=["empty", "garbage", "truncated", "array", "string", "null", "number", "deep", "bad-utf8",
        "utf8-surrogate", "lone-high", "high-then-text", "lone-low", "escaped-backslash", "nan", "infinity",
        "huge-int"])
def test_bad_bodies(body, message):
    for provider, headers in [("github", {"X-GitHub-Event": "push"}), ("gitlab", {"X-Gitlab-Event": "Push Hook"})]:
        with pytest.raises(BadPayload) as exc:
            get_provider(provider).normalize(Headers(headers), body, source="s", delivery_id="d")
        assert exc.value.message == message
        assert exc.value.status == 400


def test_valid_surrogate_pairs_and_escapes_pass():
    assert parse_json(b'{"m": "\\ud83d\\ude00 \\\\ud800 \\u00e9"}') == {"m": "\U0001F600 \\ud800 \u00e9"}


def test_form_body_problems():
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    assert parse_json(b"payload=%7B%22a%22%3A1%7D", form["Content-Type"], form_field="payload") == {"a": 1}
    with pytest.raises(BadPayload, match=r"^form body has no single 'payload' field$"):
        parse_json(b"other=1", form["Content-Type"], form_field="payload")
    with pytest.raises(BadPayload, match=r"^form body has no single 'payload' field$"):
        parse_json(b"payload=%7B%7D&payload=%7B%7D", form["Content-Type"], form_field="payload")
    with pytest.raises(BadPayload, match=r"^form body is not valid form encoding$"):
        parse_json(b"payload=%FF", form["Content-Type"], form_field="payload")
    # Without form_field (GitLab) a form body is just not JSON.
    with pytest.raises(BadPayload, match="^body is not valid JSON"):
        parse_json(b"payload=%7B%7D", form["Content-Type"])


def _push_body(**changes) -> bytes:
    body, _ = load_payload("github/push__goscm-branch.json")
    payload = json.loads(body)
    for key, value in changes.items():
        if value is ...:
            del payload[key]
        else:
            payload[key] = value
    return json.dumps(payload).encode()


@pytest.mark.parametrize("changes, message", [
    ({"ref": ...}, "push payload has no 'ref'"),
    ({"ref": None}, "push payload has no 'ref'"),
    ({"after": ...}, "push payload has no 'after'"),
    ({"ref": 7}, "push payload field 'ref' is not a string"),
    ({"after": ["x"]}, "push payload field 'after' is not a string"),
    ({"after": "HEAD; rm -rf /"}, "push payload field 'after' is not a commit SHA"),
    ({"before": 0}, "push payload field 'before' is not a string"),
    ({"repository": ...}, "push payload has no 'repository.full_name'"),
    ({"repository": {"full_name": 1}}, "push payload field 'repository.full_name' is not a string"),
    ({"commits": {}}, "push payload field 'commits' is not a list"),
    ({"commits": ["x"]}, "push payload commits[0] is not an object"),
    ({"commits": [{"id": "a" * 40, "added": "README"}]}, "push payload commits[0] field 'added' is not a list of strings"),
    ({"commits": [{"message": "m"}]}, "push payload commits[0] has no 'id'"),
    ({"forced": "yes"}, "push payload field 'forced' is not a boolean"),
    ({"head_commit": {"id": "a" * 40, "message": 3}}, "push payload field 'head_commit.message' is not a string"),
])
def test_github_push_shape_errors(changes, message):
    with pytest.raises(BadPayload) as exc:
        github.normalize(Headers({"X-GitHub-Event": "push"}), _push_body(**changes), source="s", delivery_id="d")
    assert exc.value.message == message


@pytest.mark.parametrize("changes, message", [
    ({"ref": ...}, "push payload has no 'ref'"),
    ({"after": ...}, "push payload has no 'after'"),
    ({"total_commits_count": "4"}, "push payload field 'total_commits_count' is not an integer"),
    ({"total_commits_count": True}, "push payload field 'total_commits_count' is not an integer"),
    ({"checkout_sha": "v1.0"}, "push payload field 'checkout_sha' is not a commit SHA"),
    ({"project": ..., "repository": ...}, "push payload has no 'project.path_with_namespace'"),
])
def test_gitlab_push_shape_errors(changes, message):
    body, headers = load_payload("gitlab/push_hook__docs.json")
    payload = json.loads(body)
    for key, value in changes.items():
        if value is ...:
            del payload[key]
        else:
            payload[key] = value
    with pytest.raises(BadPayload) as exc:
        gitlab.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")
    assert exc.value.message == message


def test_missing_event_header_is_a_bad_payload():
    with pytest.raises(BadPayload, match=r"^X-GitHub-Event header is missing$"):
        github.normalize(Headers({}), b"{}", source="s", delivery_id="d")
    with pytest.raises(BadPayload, match=r"^X-Gitlab-Event header is missing$"):
        gitlab.normalize(Headers({}), b"{}", source="s", delivery_id="d")


def test_ignored_events_do_not_need_a_parsable_body():
    # Nothing is parsed for events we do not handle, so a ping cannot fail on its body.
    assert github.normalize(Headers({"X-GitHub-Event": "ping"}), b"\xff", source="s", delivery_id="d").reason == "ping"
