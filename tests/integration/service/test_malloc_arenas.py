"""The web tier's cap on malloc arenas (service/web.py `limit_malloc_arenas`): real processes,
their arenas counted by glibc's own malloc_info."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from bridge.service.web import WEB_ARENAS, limit_malloc_arenas

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas")

# Eight threads, each with a malloc of its own, alive together; then the arenas malloc_info lists.
_SCRIPT = textwrap.dedent("""\
    import ctypes, os, sys, threading
    if sys.argv[1] in ("limit", "fork"):
        from bridge.service.web import limit_malloc_arenas
        assert limit_malloc_arenas()
    if sys.argv[1] == "fork":          # as gunicorn's master forks its workers
        pid = os.fork()
        if pid:
            sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    libc = ctypes.CDLL(None)
    libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    libc.fopen.argtypes, libc.fopen.restype = [ctypes.c_char_p, ctypes.c_char_p], ctypes.c_void_p
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    started, done = threading.Barrier(9), threading.Event()

    def work():
        libc.malloc(4096)          # a thread's first malloc picks (or makes) its arena
        started.wait()
        done.wait()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    started.wait()
    fp = libc.fopen(sys.argv[2].encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    done.set()
    for t in threads:
        t.join()
    print(open(sys.argv[2]).read().count("<heap nr="), flush=True)
    os._exit(0)
""")


def _arenas(tmp_path, mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode, str(tmp_path / f"{mode}.xml")],
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout.strip())


def test_the_threads_of_a_capped_process_share_two_arenas(tmp_path):
    assert _arenas(tmp_path, "free") > WEB_ARENAS      # what glibc does on its own: one each
    assert _arenas(tmp_path, "limit") <= WEB_ARENAS
    assert _arenas(tmp_path, "fork") <= WEB_ARENAS     # a forked worker inherits the cap


def test_an_operators_malloc_arena_max_is_left_as_it_is(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
