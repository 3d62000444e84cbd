"""Parts of the operations tests on a real `cibridge serve`: the payloads they post, a signed delivery
of one with a fresh `after`, /metrics text parsed into samples, and log output parsed into JSON lines."""
from __future__ import annotations

import json
import re
import uuid

from prometheus_client.parser import text_string_to_metric_families
from helpers.payloads import gitlab_token_headers, load_payload, sign_github
from helpers.process import wait_for


GH_PUSH = "github/push__goscm-branch.json"
GH_PING = "github/ping__octokit-repo-hook.json"
GL_PUSH = "gitlab/push_hook__goscm-branch.json"
GL_REPO_UPDATE = "gitlab/system_hook__docs-repository-update.json"
FORWARDED = {"X-Forwarded-For": "203.0.113.9"}


# --- helpers -------------------------------------------------------------------------------

def delivery(rel: str, *, secret: str | None, after: str | None = None):
    """(body, headers, id): a payload file under a fresh delivery id, optionally with another
    `after` commit (so a stream of pushes is not deduplicated by content), signed with `secret`
    (None: no signature or token at all)."""
    body, headers = load_payload(rel)
    if after is not None:
        body = body.replace(json.loads(body)["after"].encode(), after.encode())
    delivery_id = str(uuid.uuid4())
    if rel.startswith("github/"):
        headers["X-GitHub-Delivery"] = delivery_id
        if secret is not None:
            headers.update(sign_github(body, secret))
    else:
        headers["Idempotency-Key"] = headers["X-Gitlab-Event-UUID"] = delivery_id
        if secret is not None:
            headers.update(gitlab_token_headers(secret))
    return body, headers, delivery_id


def sha(n: int) -> str:
    return f"{n:040x}"


def metric_samples(text: str) -> dict[tuple, float]:
    """{(sample name, (sorted label pairs)): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by_labels(samples: dict, name: str, *keys: str) -> dict[tuple, float]:
    """The samples of one name as {(label values in `keys` order): value}."""
    out = {}
    for (n, labels), value in samples.items():
        if n == name:
            d = dict(labels)
            out[tuple(d[k] for k in keys)] = value
    return out


GUNICORN_TEXT_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:]+ [+-]\d{4}\] \[\d+\] \[[A-Z]+\] ")


def json_lines(text: str, *, gunicorn_text: bool = False) -> list[dict]:
    """Every log line, parsed; a line that is not JSON fails the test. `gunicorn_text`: skip
    gunicorn's own plain-text lines (see test_gunicorns_own_lines_are_json_lines_too)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("bridge: listening on "):
            continue   # the supervisor's one human line on stderr at start
        if gunicorn_text and GUNICORN_TEXT_LINE.match(line):
            continue
        lines.append(json.loads(line))
    return lines


def live_workers(bridge, n: int) -> list[int]:
    """The gunicorn master's `n` workers, once /proc lists them all. /healthz answers as soon as
    one worker serves, and gunicorn forks them one by one (and again after a kill or a HUP): on a
    loaded machine a single read found none (IndexError, ValueError on min())."""
    return wait_for(lambda: (lambda w: w if len(w) == n else None)(bridge.web_workers()),
                    timeout=60, what=f"{n} web workers")
