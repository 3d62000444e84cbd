"""One mirror shared by several dispatchers: two resolving one repository at once, a mirror locked
elsewhere waited for, then reported busy."""
from __future__ import annotations

import fcntl
import threading

import pytest

from bridge.dispatch.mirror import Mirrors, mirror_key
from bridge.events import ZERO_SHA
from bridge.payload_files import FileResolution
from helpers.git import ISOLATED, push
from helpers.mirrors import daemon, make_upstream, mirrors  # noqa: F401  (fixtures)


# --- sharing ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_dispatchers_resolving_one_repository_at_once(make_upstream, tmp_path):
    up = make_upstream("git")
    base = up.commit({"a": "1"})
    mid = up.commit({"b": "1"})
    after = up.commit({"c": "1"})
    up.git("branch", "feature", base)
    up.git("checkout", "-q", "feature")
    feature = up.commit({"f": "1"})
    events = [push(up.url, base, after), push(up.url, mid, after), push(up.url, base, mid),
              push(up.url, ZERO_SHA, feature, ref="refs/heads/feature")]
    expected = [{"b", "c"}, {"c"}, {"b"}, {"f"}]
    # Two dispatcher processes' worth of Mirrors objects over one state directory.
    dispatchers = [Mirrors(tmp_path / "mirrors", fetch_timeout=30, env=ISOLATED) for _ in range(2)]
    start = threading.Barrier(len(events))
    results: dict[int, FileResolution] = {}

    def resolve(i: int) -> None:
        start.wait()
        results[i] = dispatchers[i % 2].changed_files(events[i], url=up.url)

    threads = [threading.Thread(target=resolve, args=(i,)) for i in range(len(events))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert [results[i].files for i in range(len(events))] == expected
    assert len(dispatchers[0].list()) == 1


def test_a_mirror_locked_elsewhere_is_waited_for_then_reported_busy(make_upstream, tmp_path):
    up = make_upstream()
    before, after = up.commit({"a": "1"}), up.commit({"b": "1"})
    mirrors = Mirrors(tmp_path / "mirrors", fetch_timeout=0.2, env=ISOLATED)
    (tmp_path / "mirrors").mkdir()
    with open(tmp_path / "mirrors" / f"{mirror_key(up.url)}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)

        got = mirrors.changed_files(push(up.url, before, after), url=up.url)

    assert got.source == "unknown" and "stayed busy" in got.reason
    assert mirrors.changed_files(push(up.url, before, after), url=up.url).files == {"b"}
