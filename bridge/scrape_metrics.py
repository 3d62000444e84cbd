"""Metrics read at scrape time, not counted: build info, the last rules reload, and the process
metrics of every bridge process (supervisor, gunicorn master and workers, dispatcher).

Input: `rules-status.json` (as serve.write_status records it) and the processes registered in the
multiprocess directory by `register_process(role)`. Output: Prometheus text. prometheus-client's
multiprocess mode has no process collector (one process cannot speak for the others), so each
process registers its pid and the scraping worker reads /proc/<pid> for each, labelled by role and
pid, with prometheus-client's own ProcessCollector.
"""
from __future__ import annotations

import os
from pathlib import Path

from bridge import __version__

PROCESSES = "processes"   # subdirectory of the multiprocess directory: one file per live process


def _start_ticks(pid) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks): with the pid, names one process
    even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def register_process(role: str) -> None:
    """Make this process's CPU, memory and file descriptors part of /metrics (multiprocess mode
    only; a no-op otherwise). Never raises: metrics are never worth a start."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    try:
        path = Path(directory) / PROCESSES
        path.mkdir(mode=0o700, exist_ok=True)
        (path / f"{role}.{os.getpid()}").write_text(_start_ticks("self") or "")
    except OSError:
        pass


def registered_processes(directory) -> list[tuple[str, int]]:
    """(role, pid) of each registered process still alive; the files of dead ones are removed."""
    out = []
    try:
        entries = list((Path(directory) / PROCESSES).iterdir())
    except OSError:
        return out
    for entry in entries:
        role, _, pid = entry.name.rpartition(".")
        if not role or not pid.isdigit():
            continue
        try:
            ticks = entry.read_text()
        except OSError:
            continue
        if _start_ticks(pid) != ticks or not ticks:
            entry.unlink(missing_ok=True)   # gone, or its pid now names another process
            continue
        out.append((role, int(pid)))
    return sorted(out)


class _Processes:
    """A collector: ProcessCollector's families for each registered process, with role and pid."""

    def __init__(self, processes):
        self.processes = processes

    def collect(self):
        from prometheus_client import ProcessCollector
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        families: dict[str, object] = {}
        for role, pid in self.processes:
            for family in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                out = families.get(family.name)
                if out is None:
                    cls = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
                    out = families[family.name] = cls(family.name, family.documentation,
                                                      labels=["role", "pid"])
                for sample in family.samples:
                    out.add_metric([role, str(pid)], sample.value)
        return list(families.values())


class _Families:
    """A collector of metric families made at scrape time."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def families_text(families) -> bytes:
    """Prometheus text of metric families built at scrape time. Never through Gauge(): in
    multiprocess mode a Gauge writes a value file of this process into the shared directory, and
    the next scrape would add it again under a pid label."""
    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry()
    registry.register(_Families(list(families)))
    return generate_latest(registry)


def scrape_time_metrics(rules_status: dict | None, multiprocess: bool) -> bytes:
    from prometheus_client.core import GaugeMetricFamily
    info = GaugeMetricFamily("bridge_build_info", "The running bridge's version (always 1)",
                             labels=["version"])
    info.add_metric([__version__], 1)
    families = [info]
    if rules_status:
        ok = rules_status.get("ok", True)
        families.append(GaugeMetricFamily(
            "bridge_config_last_reload_successful",
            "1 if the last load of rules.yaml (start or reload) succeeded, else 0", value=int(ok)))
        when = rules_status.get("success_time")
        if when is None and ok:
            when = rules_status.get("time")   # written before success_time existed
        if when is not None:
            families.append(GaugeMetricFamily(
                "bridge_config_last_reload_success_timestamp_seconds",
                "When rules.yaml was last loaded successfully (Unix time)", value=when))
    if multiprocess and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        families += _Processes(registered_processes(os.environ["PROMETHEUS_MULTIPROC_DIR"])).collect()
    else:
        from prometheus_client import ProcessCollector   # one process: the usual families
        families += ProcessCollector(registry=None).collect()
    return families_text(families)
