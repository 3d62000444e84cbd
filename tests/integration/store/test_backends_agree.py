"""SQLite and PostgreSQL accept exactly the same deliveries: the same signed pushes (long refs and
repository names, NUL, lone surrogates and odd unicode in names and messages) go through the real
Flask app to an SQLite file and to a PostgreSQL schema, and every reply must be the same."""
from __future__ import annotations

import copy
import json
import random
import uuid

import pytest
from helpers.rules import BASE_RULES
from hypothesis import HealthCheck, event, example, given, settings, strategies as st
from helpers.payloads import load_payload, sign_github
from helpers.store import pg_schema

from bridge.config.load import load_config
from bridge.store import Store
from bridge.web.app import create_app

RULES = BASE_RULES.replace(
    'run: {target: mem, parameters: {SHA: "${sha}", BRANCH: "${branch}"}}',
    'run: {target: mem, parameters: {SHA: "${sha}", BRANCH: "${branch}", REPO: "${repo}", '
    'WHO: "${pusher}"}}') + """\
  - name: docs
    on: {repo: "acme/*", branches: [main, "release/**"], paths: ["docs/**"]}
    run: {target: mem, parameters: {REF: "${ref}"}}
"""
TEMPLATE, _HEADERS = load_payload("github/push__goscm-branch.json")


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """The same rules in front of each backend: {"sqlite": client, "postgresql": client}."""
    tmp = tmp_path_factory.mktemp("agree")
    (tmp / "rules.yaml").write_text(RULES, encoding="utf-8")
    config = load_config(tmp / "rules.yaml", environ={"GH_SECRET": "s3cret", "GH_SECRET_OLD": "x",
                                                      "GL_TOKEN": "t"})
    with pg_schema() as pg_url:
        stores = {"sqlite": Store.open(f"sqlite:///{tmp / 'bridge.db'}", durability="normal"),
                  "postgresql": Store.open(pg_url)}
        try:
            yield {name: create_app(config, store=store, state_dir=str(tmp / name)).test_client()
                   for name, store in stores.items()}
        finally:
            for store in stores.values():
                store.close()


def push(repo: str, ref: str, *, message="fix", author="Mona", files=("README.md",),
         delivery: str | None = None, escape: bool = True) -> tuple[bytes, dict]:
    """A signed GitHub push built from a real payload, with the given values in it."""
    payload = json.loads(TEMPLATE)
    payload["repository"]["full_name"] = repo
    payload["repository"]["name"] = repo.rsplit("/", 1)[-1]
    payload["ref"] = ref
    payload["after"] = uuid.uuid4().hex + "0" * 8
    commit = copy.deepcopy(payload["head_commit"])
    commit.update(id=payload["after"], message=message, modified=list(files), added=[], removed=[])
    commit["author"]["name"] = commit["committer"]["name"] = author
    payload["head_commit"], payload["commits"] = commit, [commit]
    payload["pusher"]["name"] = author
    # GitHub sends UTF-8; a lone surrogate only exists as a \u escape, so escape=False keeps them
    # as the (invalid) bytes a broken sender would send.
    body = json.dumps(payload, ensure_ascii=escape).encode("utf-8", "surrogatepass")
    headers = {**_HEADERS, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
               **sign_github(body, "s3cret")}
    return body, headers


def replies(apps, body: bytes, headers: dict, source: str = "github") -> dict:
    out = {}
    for name, client in apps.items():
        resp = client.post(f"/hooks/{source}", data=body, headers=headers)
        data = resp.get_json()
        for job in data.get("jobs", ()) if isinstance(data, dict) else ():
            job.pop("id", None)             # each database numbers its own jobs
        out[name] = (resp.status_code, data)
    return out


def assert_same(apps, body, headers, source="github") -> int:
    got = replies(apps, body, headers, source)
    assert got["sqlite"] == got["postgresql"]
    status = got["sqlite"][0]
    assert status < 500, got["sqlite"]
    return status


# Values a host (or a forger with the secret) can put in a push: every one must get the same reply.
LONG = "a" * 600
NOISE = random.Random(12).randbytes(3000).hex()
POISON = [
    pytest.param(dict(repo="acme/" + LONG, ref="refs/heads/main"), 202, id="600-char repo"),
    pytest.param(dict(repo="acme/api", ref="refs/heads/" + "b" * 1000), 202, id="1000-char branch"),
    pytest.param(dict(repo="acme/api", ref="refs/tags/v" + "1." * 400 + "0"), 202, id="long tag"),
    # Incompressible: PostgreSQL caps a b-tree entry at ~2.7 KB after compression.
    pytest.param(dict(repo="acme/" + NOISE, ref="refs/heads/" + NOISE), 202, id="6000-char random names"),
    pytest.param(dict(repo="acme/api", ref="refs/heads/main", delivery="d" * 400), 202,
                 id="400-char delivery id"),
    # PostgreSQL can hold neither U+0000 nor a lone surrogate: a 400 naming it, on both.
    pytest.param(dict(repo="acme/a\x00pi", ref="refs/heads/main"), 400, id="NUL in repo"),
    pytest.param(dict(repo="acme/api", ref="refs/heads/ma\x00in"), 400, id="NUL in ref"),
    pytest.param(dict(repo="acme/api", ref="refs/heads/main", message="fix\x00it", author="M\x00na"),
                 400, id="NUL in message and author"),
    pytest.param(dict(repo="acme/api", ref="refs/heads/main", files=["docs/a\x00.md"]), 400,
                 id="NUL in a path"),
    pytest.param(dict(repo="acme/\udc80api", ref="refs/heads/main"), 400, id="lone surrogate in repo"),
    pytest.param(dict(repo="acme/api", ref="refs/heads/\ud800x"), 400, id="lone surrogate in ref"),
    pytest.param(dict(repo="acme/api", ref="refs/heads/main", message="\ud83d", author="\udfff"),
                 400, id="lone surrogates in message and author"),
    pytest.param(dict(repo="acme/api", ref="refs/heads/main", message="\ud83d", escape=False),
                 400, id="surrogate bytes, not UTF-8"),
    pytest.param(dict(repo="acme/ap\u202ei", ref="refs/heads/\U0001F600-\u0301\ufeff", author="İß\u2028"),
                 202, id="odd unicode"),
    pytest.param(dict(repo="acme/api", ref="refs/heads/main", message="m" * 200_000), 202, id="long message"),
]


@pytest.mark.parametrize("values,expected", POISON)
def test_both_backends_answer_the_same(apps, values, expected):
    body, headers = push(**values)
    assert assert_same(apps, body, headers) == expected
    assert assert_same(apps, body, headers) == (200 if expected == 202 else expected)  # redelivered
    headers["X-GitHub-Delivery"] = str(uuid.uuid4())              # the same push, a new delivery id
    assert assert_same(apps, body, headers) == (200 if expected == 202 else expected)


@pytest.mark.parametrize("depth,segment", [(3, 1200), (20, 255)])
def test_deep_gitlab_paths_and_long_branches(apps, depth, segment):
    body, headers = load_payload("gitlab/push_hook__goscm-branch.json")
    payload = json.loads(body)
    rng = random.Random(depth)
    path = "/".join(rng.randbytes(segment // 2).hex() for _ in range(depth))
    payload["project"]["path_with_namespace"] = path
    payload["ref"] = "refs/heads/" + "/".join(rng.randbytes(100).hex() for _ in range(depth))
    body = json.dumps(payload).encode()
    headers.update({"X-Gitlab-Token": "t", "X-Gitlab-Event-UUID": str(uuid.uuid4()),
                    "Idempotency-Key": str(uuid.uuid4())})
    assert len(path) > 3000
    assert assert_same(apps, body, headers, "gitlab") == 202


def test_stored_rows_hold_the_long_values_on_both(apps):
    repo, ref = "acme/" + "r" * 700, "refs/heads/" + "x" * 900
    body, headers = push(repo, ref)
    assert_same(apps, body, headers)
    for client in apps.values():
        [row] = client.application.extensions["bridge"].store.list_deliveries(repo=repo)
        assert (row["repo"], row["ref"]) == (repo, ref)


# --- the property: generated deliveries, compared reply by reply ------------------------------

# Odd but storable characters, and the two PostgreSQL cannot hold (rarer: most deliveries pass).
_ODD = ["\x01", "\x7f", "\U0001F600", "\u202e", "e\u0301", "\ufeff", "\u2028", "\uffff", "ß", "İ",
        "\\", '"', "'", "%", "..", "@{", " ", "\n", "é", "-", "~", ":", "*", "[", "?", "|"]
_POISON = ["\x00", "\ud800", "\udfff"]
_piece = st.one_of(st.text("abcxyz019._-", min_size=1, max_size=8), st.sampled_from(_ODD))
_name = st.builds(lambda parts, n: "".join(parts) * n,
                  st.lists(_piece, min_size=1, max_size=5), st.sampled_from([1, 1, 1, 2, 40, 120]))


@st.composite
def deliveries(draw):
    values = dict(
        repo=draw(_name).replace("/", "") + "/" + draw(_name).replace("/", ""),
        ref=draw(st.sampled_from(["refs/heads/", "refs/tags/", "refs/heads/release/", "refs/x/"]))
        + draw(_name), message=draw(_name), author=draw(_name),
        files=draw(st.lists(st.sampled_from(["docs/", "src/", ""]).flatmap(
            lambda d: _name.map(lambda n: d + n)), max_size=3)),
        delivery=draw(st.one_of(st.none(), st.text("abcdef0123456789-", min_size=1, max_size=300))),
        escape=draw(st.sampled_from([True, True, True, False])))
    if draw(st.integers(0, 7)) == 0:
        field = draw(st.sampled_from(["repo", "ref", "message", "author"]))
        values[field] += draw(st.sampled_from(_POISON))
    return values


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(deliveries())
@example(dict(repo="acme/" + "a" * 501, ref="refs/heads/main"))
@example(dict(repo="acme/api", ref="refs/heads/" + "b" * 490))
@example(dict(repo="acme/api", ref="refs/heads/main", files=["docs/\x00"]))
def test_generated_deliveries_get_the_same_reply_from_both_backends(apps, values):
    body, headers = push(**values)
    event(f"status {assert_same(apps, body, headers)}")    # --hypothesis-show-statistics
