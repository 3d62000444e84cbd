"""The exec target failing, hanging and flooding its output under a real `cibridge serve`: each job
ends as it should and the dispatcher's memory stays bounded."""
from __future__ import annotations


import pytest

from helpers.process import wait_for
from helpers.service import RECORD, cli, push, rules, settled, start_bridge  # noqa: F401  (fixture)


# --- the exec target failing, hanging, flooding --------------------------------------------------

EXEC_FAULT_RULES = """\
  - name: fails
    on: {repo: f110/test, branches: [fail]}
    run: {target: local, command: ['/bin/sh', '-c', 'echo about to fail; exit 3']}
  - name: hangs
    on: {repo: f110/test, branches: [hang]}
    run: {target: local, command: ['/bin/sleep', '30'], timeout: 1}
  - name: floods
    on: {repo: f110/test, branches: [flood]}
    run: {target: local, command: ['/bin/sh', '-c', 'yes a line of build output | head -c 100000000; echo; echo the end']}
"""


def peak_rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@pytest.mark.slow
def test_exec_failing_hanging_and_flooding_end_to_end(tmp_path, start_bridge):
    bridge = start_bridge(rules(tmp_path / "builds.log", f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}",
                                extra_rules=EXEC_FAULT_RULES))
    dispatcher = bridge.child("dispatch")
    peak_before = peak_rss_kib(dispatcher)
    ids = {}
    for branch in ("fail", "hang", "flood"):
        delivery, body, headers = push(branch=branch)
        r = bridge.post("github", body, headers)
        assert r.status_code == 202, r.text
        assert [j["rule"] for j in r.json()["jobs"]] == [{"fail": "fails", "hang": "hangs",
                                                          "flood": "floods"}[branch]]
        ids[branch] = delivery
    wait_for(lambda: settled(bridge, 3), timeout=30, what="the three jobs finished")

    def show(delivery):
        done = cli("deliveries", "--rules", bridge.rules, "--state-dir", bridge.state, "show", delivery)
        assert done.returncode == 0, done.stderr
        return done.stdout

    store = bridge.store()
    try:
        failed, hung, flood = (store.get_delivery(ids[b])["jobs"][0] for b in ("fail", "hang", "flood"))
    finally:
        store.close()
    assert failed["state"] == "failed"
    assert failed["detail"]["exit_code"] == 3 and failed["detail"]["reason"] == "exit code 3"
    text = show(ids["fail"])
    assert "fails -> local  state failed  attempts 1" in text
    assert "about to fail" in text                        # the output's last lines
    assert "attempt 1" in text and "failed" in text

    assert hung["state"] == "failed"
    assert hung["detail"]["reason"] == "timed out after 1s"
    assert 1.0 <= hung["detail"]["duration"] < 10
    assert "hangs -> local  state failed" in show(ids["hang"])

    assert flood["state"] == "succeeded" and flood["detail"]["exit_code"] == 0
    assert flood["detail"]["output_bytes"] == 100_000_000 + len("\nthe end\n")
    assert len(flood["detail"]["output"]) <= 64 * 1024     # only the tail is kept
    assert flood["detail"]["output"].endswith("the end\n")
    text = show(ids["flood"])
    assert "floods -> local  state succeeded" in text and "      the end" in text
    # The dispatcher drained 100 MB without holding it: its peak memory stayed far below that.
    assert bridge.child("dispatch") == dispatcher
    assert peak_rss_kib(dispatcher) - peak_before < 30 * 1024, (peak_before, peak_rss_kib(dispatcher))
