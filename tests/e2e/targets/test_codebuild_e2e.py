"""A delivery to a real `cibridge serve` becomes one CodeBuild build on moto, despite throttling."""
from __future__ import annotations

from bridge.jobs import Job
from bridge.targets.codebuild import console_url, idempotency_token
from helpers.targets_e2e import (ACCEPTED, BRANCH, CODEBUILD_RULE, REGION, SHA, bridge, bridge_cli,
                                 bridge_env, deliver, moto, proxy, rules, wait_job)  # noqa: F401  (fixtures)


# --- CodeBuild ----------------------------------------------------------------------------

def test_delivery_becomes_one_codebuild_build_despite_throttling(moto, proxy, bridge):
    _, client = moto
    before = set(client.list_builds_for_project(projectName="api")["ids"])
    proxy.fail = 2                     # botocore's two tries of the first attempt are throttled
    bp = bridge(rules(codebuild=proxy.url, rules_yaml=CODEBUILD_RULE), bridge_env())
    delivery = deliver(bp)

    job = wait_job(bp, delivery, lambda j: j["state"] in ACCEPTED, "the CodeBuild build")
    token = idempotency_token(Job(id=job["id"], delivery=delivery, rule="", target="", request={},
                                  event=None))
    sent = proxy.calls("StartBuild")
    assert len(sent) == 3              # 2 throttled inside attempt 1, then attempt 2
    assert sent[0] == {
        "projectName": "api",
        "idempotencyToken": token,
        "sourceVersion": SHA,
        "environmentVariablesOverride": [
            {"name": "BRANCH", "value": BRANCH, "type": "PLAINTEXT"},
            {"name": "PUSHER", "value": "f110", "type": "PLAINTEXT"},
            {"name": "NPM_TOKEN", "value": "/ci/npm-token", "type": "PARAMETER_STORE"}],
    }
    assert sent[1] == sent[2] == sent[0]          # a retry can never start a second build
    history = bp.store_.get_delivery(delivery)["jobs"][0]["history"]
    assert [a["outcome"] for a in history[:2]] == ["retry", "started"]
    assert "ThrottlingException" in history[0]["error"]

    [build_id] = set(client.list_builds_for_project(projectName="api")["ids"]) - before
    assert (job["remote_id"], job["url"]) == (build_id, console_url(REGION, "api", build_id))
    [build] = client.batch_get_builds(ids=[build_id])["builds"]
    assert build["sourceVersion"] == SHA
    shown = bridge_cli(bp, "deliveries", "show", delivery)
    assert console_url(REGION, "api", build_id) in shown.stdout
