"""The operator CLI (send, list, show, replay, retry, prune) as subprocesses against a running bridge."""
from __future__ import annotations

import json
import time

import pytest

from helpers.payloads import payloads_dir
from helpers.process import wait_for
from helpers.service import (PAYLOAD, RECORD, build_counts, cli, cli_many, db, rules, settled,
                             start_bridge)  # noqa: F401  (fixture)


# --- the operator CLI against a running bridge -----------------------------------------------------

@pytest.mark.slow
def test_operator_cli_send_list_show_replay_retry_prune(tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    bridge = start_bridge(rules(
        builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}",
        extra_rules="  - name: broken\n    on: {repo: f110/test, branches: [test]}\n"
                    "    run: {target: local, command: ['/no/such/program']}\n"))
    common = ["--rules", bridge.rules, "--state-dir", bridge.state]
    payload = payloads_dir() / PAYLOAD

    sent = cli("send", "--rules", bridge.rules, "--source", "github", "--url", bridge.url, payload)
    assert sent.returncode == 0, sent.stderr
    status, reply = sent.stdout.split(" ", 1)
    reply = json.loads(reply)
    assert status == "202" and reply["matched"] == ["build", "broken"]
    delivery = reply["delivery"]
    job_ids = {j["rule"]: j["id"] for j in reply["jobs"]}
    # The same push again under a fresh delivery id: recorded, not built again.
    again = cli("send", "--rules", bridge.rules, "--source", "github", "--url", bridge.url, payload)
    assert again.returncode == 0 and again.stdout.startswith("200 ")
    assert json.loads(again.stdout.split(" ", 1)[1])["duplicate_of"] == delivery

    wait_for(lambda: settled(bridge, 2), what="both jobs done")
    listing, dead_only, shown, missing, shown_after, bogus = cli_many(
        ["deliveries", *common], ["deliveries", *common, "--state", "dead"],
        ["deliveries", *common, "show", delivery], ["deliveries", *common, "show", "no-such-delivery"],
        ["deliveries", "show", delivery, *common], ["deliveries", *common, "--state", "bogus"])
    # The common options after the subcommand too; a state that does not exist is a usage error.
    assert shown_after.returncode == 0 and shown_after.stdout == shown.stdout, shown_after.stderr
    assert bogus.returncode == 2 and "Traceback" not in bogus.stderr
    assert "Invalid value for '--state': 'bogus' is not one of 'matched'" in bogus.stderr
    assert "'dead'" in bogus.stderr
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["DELIVERY", "RECEIVED", "REPO", "REF", "OUTCOME", "JOBS"]
    row = next(line for line in lines if line.startswith(delivery))
    assert "f110/test" in row and "refs/heads/test" in row and "matched" in row
    assert "build:succeeded, broken:dead" in row
    assert any("duplicate" in line for line in lines[1:])
    assert [line.split()[0] for line in dead_only.stdout.splitlines()[1:]] == [delivery]

    assert shown.returncode == 0, shown.stderr
    assert f"delivery {delivery}  source github (github)" in shown.stdout
    assert "outcome  matched" in shown.stdout
    assert "rule     MATCH build" in shown.stdout and "rule     MATCH broken" in shown.stdout
    assert f"job {job_ids['build']}  build -> local  state succeeded  attempts 1" in shown.stdout
    assert (f"job {job_ids['broken']}  broken -> local  state dead  attempts 1  "
            "error: command '/no/such/program' not found") in shown.stdout
    assert missing.returncode == 1 and "no delivery 'no-such-delivery'" in missing.stderr

    # retry: the dead job runs again (and is dead again: the program is still missing).
    retried = cli("retry", *common, job_ids["broken"])
    assert retried.returncode == 0 and retried.stdout.strip() == f"job {job_ids['broken']} queued again"
    wait_for(lambda: settled(bridge), what="the retried job done")
    shown = cli("deliveries", *common, "show", delivery).stdout
    assert f"job {job_ids['broken']}  broken -> local  state dead  attempts 2" in shown
    not_dead = cli("retry", *common, job_ids["build"])
    assert not_dead.returncode == 1 and f"job {job_ids['build']} does not exist or is not dead" in not_dead.stderr

    # replay: re-matched against the current rules, new jobs queued and built.
    replayed = cli("replay", *common, delivery)
    assert replayed.returncode == 0, replayed.stderr
    assert "MATCH build" in replayed.stdout and "MATCH broken" in replayed.stdout
    assert "queued 2 job(s): " in replayed.stdout
    new_ids = [int(x) for x in replayed.stdout.rsplit(": ", 1)[1].split(", ")]
    wait_for(lambda: settled(bridge, 4), what="the replayed jobs done")
    runs = build_counts(builds)
    assert runs[job_ids["build"]] == 1 and runs[new_ids[0]] == 1

    # prune: only deliveries older than the given age go, with their jobs.
    kept, bad = cli_many(["prune", *common, "--older-than", "1h"],
                         ["prune", *common, "--older-than", "soon"])
    assert kept.returncode == 0 and kept.stdout.strip() == "pruned 0 deliveries older than 1h"
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    time.sleep(1.1)
    pruned = cli("prune", *common, "--older-than", "1s")
    assert pruned.returncode == 0 and pruned.stdout.strip() == "pruned 2 deliveries older than 1s"
    assert cli("deliveries", *common).stdout.splitlines()[1:] == []
    with db(bridge) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
