"""The Jenkins stand-in's model: its jobs, builds and queue items, the record of each request, and
the JSON Jenkins' REST API renders of them (with its `?tree=` filter).

Input: the stand-in's state (`url`, `now()`, `queue`). Output: dicts shaped as Jenkins core answers
`/job/.../api/json`, `/job/.../N/api/json` and `/queue/item/N/api/json`.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote


@dataclass
class Recorded:
    method: str
    path: str                       # raw path, without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]         # lower-cased names
    body: bytes
    received: float = field(default_factory=time.monotonic)   # real time, for benchmarks
    status: int = 0                 # what the stand-in answered


@dataclass
class StandinJob:
    full_name: str
    parameters: dict[str, str] | None   # name -> default; None: the job is not parameterized
    result: str = "SUCCESS"
    build_token: str | None = None
    disabled: bool = False
    next_build: int = 1
    builds: dict[int, "StandinBuild"] = field(default_factory=dict)

    @property
    def short_name(self) -> str:
        return self.full_name.rsplit("/", 1)[-1]


@dataclass
class StandinBuild:
    number: int
    job: StandinJob
    queue_id: int
    params: dict[str, str]
    started: float
    finish_at: float
    result: str


@dataclass
class QueueItem:
    id: int
    job: StandinJob
    params: dict[str, str]
    dropped: list[str]              # parameters the job does not define (SECURITY-170)
    user: str
    created: float
    ready_at: float
    left_at: float | None = None
    build: StandinBuild | None = None
    cancelled: bool = False


class JenkinsDocuments:
    """Mixed into the stand-in: the JSON of its folders, jobs, builds and queue items."""

    def _job_url(self, full_name: str) -> str:
        return self.url + "".join(f"job/{quote(p)}/" for p in full_name.split("/"))

    def _build_json(self, build: StandinBuild) -> dict:
        done = self.now() >= build.finish_at
        return {
            "_class": "hudson.model.FreeStyleBuild",
            "actions": [_parameters_action(build.params)],
            "building": not done,
            "displayName": f"#{build.number}",
            "duration": 0,
            "fullDisplayName": " » ".join(build.job.full_name.split("/")) + f" #{build.number}",
            "id": str(build.number),
            "number": build.number,
            "queueId": build.queue_id,
            "result": build.result if done else None,
            "timestamp": int(build.started * 1000),
            "url": f"{self._job_url(build.job.full_name)}{build.number}/",
        }

    def _queue_json(self, item: QueueItem) -> dict:
        out = {
            "actions": [_parameters_action(item.params),
                        {"_class": "hudson.model.CauseAction",
                         "causes": [{"_class": "hudson.model.Cause$UserIdCause",
                                     "shortDescription": f"Started by user {item.user}",
                                     "userId": item.user, "userName": item.user}]}],
            "blocked": False,
            "buildable": False,
            "id": item.id,
            "inQueueSince": int(item.created * 1000),
            "params": "".join(f"\n{k}={v}" for k, v in item.params.items()),
            "stuck": False,
            "task": {"_class": "hudson.model.FreeStyleProject", "name": item.job.short_name,
                     "url": self._job_url(item.job.full_name), "color": "notbuilt"},
            "url": f"queue/item/{item.id}/",
        }
        if item.left_at is None:
            left = max(0.0, item.ready_at - self.now())
            out.update({"_class": "hudson.model.Queue$WaitingItem",
                        "why": f"In the quiet period. Expires in {left:.1f} sec",
                        "timestamp": int(item.ready_at * 1000)})
        else:
            exe = None
            if item.build is not None:
                exe = {"_class": "hudson.model.FreeStyleBuild", "number": item.build.number,
                       "url": f"{self._job_url(item.job.full_name)}{item.build.number}/"}
            out.update({"_class": "hudson.model.Queue$LeftItem", "cancelled": item.cancelled,
                        "executable": exe})
        return out

    def _job_json(self, node, full_name: str) -> dict:
        if isinstance(node, dict):
            return {"_class": "com.cloudbees.hudson.plugins.folder.Folder",
                    "name": full_name.rsplit("/", 1)[-1], "fullName": full_name,
                    "url": self._job_url(full_name), "jobs": self._children(node, full_name)}
        builds = [{"_class": "hudson.model.FreeStyleBuild", "number": n,
                   "url": f"{self._job_url(full_name)}{n}/"} for n in sorted(node.builds, reverse=True)]
        prop = []
        if node.parameters is not None:
            prop.append({"_class": "hudson.model.ParametersDefinitionProperty",
                         "parameterDefinitions": [
                             {"_class": "hudson.model.StringParameterDefinition",
                              "defaultParameterValue": {"_class": "hudson.model.StringParameterValue",
                                                        "name": k, "value": v},
                              "description": "", "name": k, "type": "StringParameterDefinition"}
                             for k, v in node.parameters.items()]})
        in_queue = any(i.job is node and i.left_at is None for i in self.queue.values())
        return {"_class": "hudson.model.FreeStyleProject", "name": node.short_name,
                "fullName": full_name, "displayName": node.short_name,
                "url": self._job_url(full_name), "buildable": not node.disabled,
                "color": "disabled" if node.disabled else "blue", "inQueue": in_queue,
                "nextBuildNumber": node.next_build, "builds": builds,
                "firstBuild": builds[-1] if builds else None, "lastBuild": builds[0] if builds else None,
                "property": prop, "queueItem": None}

    def _children(self, folder: dict, prefix: str) -> list[dict]:
        out = []
        for name, child in folder.items():
            full = f"{prefix}/{name}" if prefix else name
            cls = ("com.cloudbees.hudson.plugins.folder.Folder" if isinstance(child, dict)
                   else "hudson.model.FreeStyleProject")
            out.append({"_class": cls, "name": name, "url": self._job_url(full), "color": "blue"})
        return out


def apply_tree(doc, spec: str):
    """Jenkins' `?tree=` filter: `a,b[c,d]{0,10}` keeps the named fields (and `_class`), cuts
    lists to the range (from M inclusive to N exclusive), and an object named without a sub-tree
    shrinks to its `_class`."""
    fields, _ = _parse_tree(spec, 0)
    return _pick(doc, fields)


def _parse_tree(spec: str, i: int):
    fields = {}
    while i < len(spec):
        m = re.compile(r"[A-Za-z_$][\w$]*").match(spec, i)
        if m is None:
            raise ValueError(f"bad tree at {i}: {spec!r}")
        name, i, sub, rng = m.group(), m.end(), None, None
        if spec[i:i + 1] == "[":
            sub, i = _parse_tree(spec, i + 1)
        if spec[i:i + 1] == "{":
            end = spec.index("}", i)
            lo, comma, hi = spec[i + 1:end].partition(",")
            lo_i = int(lo) if lo else 0
            rng = slice(lo_i, (int(hi) if hi else None) if comma else lo_i + 1)
            i = end + 1
        fields[name] = (sub, rng)
        if spec[i:i + 1] == ",":
            i += 1
        elif spec[i:i + 1] == "]":
            return fields, i + 1
    return fields, i


def _pick(value, fields):
    if isinstance(value, list):
        return [_pick(v, fields) for v in value]
    if not isinstance(value, dict):
        return value
    out = {"_class": value["_class"]} if "_class" in value else {}
    for name, (sub, rng) in fields.items():
        if name not in value:
            continue
        v = value[name]
        if rng is not None and isinstance(v, list):
            v = v[rng]
        out[name] = _pick(v, sub or {}) if isinstance(v, (dict, list)) else v
    return out


def _parameters_action(params: dict) -> dict:
    return {"_class": "hudson.model.ParametersAction",
            "parameters": [{"_class": "hudson.model.StringParameterValue", "name": k, "value": v}
                           for k, v in params.items()]}
