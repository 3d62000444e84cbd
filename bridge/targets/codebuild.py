"""AWS CodeBuild target: starts a rule's project through boto3 and follows the build's status.

Input: a `Job` whose request names a CodeBuild `project`, `source_version`, `env` and overrides
(its keys and their checks: `CodeBuildSpec`, codebuild_spec.py).
Output: a `Run` (build id and console link), or `TargetUnavailable` / `TargetRejected`,
translated at one point (`_translated`).
"""
from __future__ import annotations

import datetime
import hashlib
import threading
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable
from urllib.parse import quote

import boto3
import botocore.config
import botocore.exceptions as bx

from bridge.errors import TargetError, TargetRejected, TargetUnavailable
from bridge.events import ZERO_SHA
from bridge.jobs import Job, Run, rerun_suffix
from bridge.targets.codebuild_spec import ENV_REFERENCES, CodeBuildSpec

#: One quick retry inside botocore (safe: StartBuild carries an idempotency token); beyond that
#: the dispatcher's backoff governs.
CLIENT_CONFIG = botocore.config.Config(retries={"total_max_attempts": 2, "mode": "standard"},
                                       connect_timeout=5, read_timeout=30)
FINAL_OK = "SUCCEEDED"
#: Assumed-role credentials are renewed this long before they expire.
REFRESH_MARGIN = datetime.timedelta(minutes=5)

_TRANSIENT = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
              "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure",
              "InternalServerError", "RequestTimeout", "RequestTimeoutException"}
_CREDENTIALS = {"UnrecognizedClientException", "ExpiredTokenException", "ExpiredToken",
                "AccessDeniedException", "AccessDenied", "InvalidClientTokenId",
                "InvalidSignatureException", "SignatureDoesNotMatch", "IncompleteSignature",
                "MissingAuthenticationTokenException"}
_CREDENTIAL_HINT = ("check the credentials the bridge runs with (instance role, profile or "
                    "role_arn) and that they allow codebuild:StartBuild and codebuild:BatchGetBuilds")


def idempotency_token(job: Job) -> str:
    """Stable across retries of one job, distinct between jobs, within CodeBuild's 64 characters."""
    # An operator's retry of a failed build (rerun_suffix) is a new build, not that one again.
    digest = hashlib.sha256(f"{job.delivery}\0{job.id}{rerun_suffix(job)}".encode()).hexdigest()
    return f"bridge-{digest[:56]}"


def console_url(region: str, project: str, build_id: str) -> str:
    return (f"https://{region}.console.aws.amazon.com/codesuite/codebuild/projects/"
            f"{quote(project, safe='')}/build/{quote(build_id, safe='')}/?region={region}")


def environment(env: dict[str, Any]) -> list[dict[str, str]]:
    """`env:` -> environmentVariablesOverride: plain values, or Parameter Store / Secrets
    Manager references that CodeBuild resolves itself (the values never pass through us)."""
    out = []
    for name, value in env.items():
        if isinstance(value, dict):
            (kind, ref), = value.items()
            out.append({"name": name, "value": str(ref), "type": ENV_REFERENCES[kind]})
        else:
            out.append({"name": name, "value": str(value), "type": "PLAINTEXT"})
    return out


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class CodeBuildTarget(CodeBuildSpec):
    """A CodeBuild region (and account). boto3 clients are thread-safe: one is shared."""

    def __init__(self, name: str, options: dict[str, Any], *, session: boto3.Session | None = None,
                 now: Callable[[], datetime.datetime] = _utcnow):
        super().__init__(name, options)
        self.region = options["region"]
        self._session = session
        self._now = now
        self._client = None
        self._expires: datetime.datetime | None = None
        self._lock = threading.Lock()

    # --- starting and following ------------------------------------------------------------

    def start(self, job: Job) -> Run:
        req = job.request
        project = req["project"]
        params: dict[str, Any] = {"projectName": project, "idempotencyToken": idempotency_token(job)}
        source_version = req.get("source_version") or job.event.sha
        if source_version and source_version != ZERO_SHA:
            params["sourceVersion"] = source_version
        if req.get("env"):
            params["environmentVariablesOverride"] = environment(req["env"])
        if req.get("buildspec_override"):
            params["buildspecOverride"] = req["buildspec_override"]
        if req.get("compute_type_override"):
            params["computeTypeOverride"] = req["compute_type_override"]
        with self._translated(project):
            build = self.client().start_build(**params)["build"]
        return Run(remote_id=build["id"], url=console_url(self.region, project, build["id"]),
                   state="started",
                   detail={"project": project, "arn": build.get("arn", ""),
                           "build_number": build.get("buildNumber")})

    def follow(self, run: Run) -> Run:
        """batch_get_builds: IN_PROGRESS stays "started"; SUCCEEDED "succeeded"; FAILED, FAULT,
        TIMED_OUT, STOPPED (or an id CodeBuild no longer knows) "failed"."""
        if run.state not in ("started", "queued"):
            return run
        with self._translated(run.detail.get("project", "")):
            answer = self.client().batch_get_builds(ids=[run.remote_id])
        build = next((b for b in answer.get("builds", []) if b.get("id") == run.remote_id), None)
        if build is None:
            return replace(run, state="failed", detail={**run.detail, "status": "NOT_FOUND"})
        status = build.get("buildStatus", "")
        detail = {**run.detail, "status": status, "phase": build.get("currentPhase", "")}
        if status == "IN_PROGRESS":
            return replace(run, detail=detail)
        return replace(run, state="succeeded" if status == FINAL_OK else "failed", detail=detail)

    def cancel(self, run: Run) -> bool:
        """StopBuild; a build that already ended answers with its final status, no error."""
        with self._translated(run.detail.get("project", "")):
            self.client().stop_build(id=run.remote_id)
        return True

    def ping(self) -> str:
        """`/readyz?targets=1`: an authenticated, read-only call to CodeBuild."""
        with self._translated(""):
            self.client().list_projects(sortBy="NAME")
        return "ok"

    # --- cibridge check --online -------------------------------------------------------------

    def check_online(self, runs: list[tuple[str, int, dict]], *, rules_file: str = "rules.yaml") -> list[str]:
        names = sorted({r["project"] for _, _, r in runs if "${" not in r.get("project", "${")})
        found: set[str] = set()
        try:
            with self._translated(""):
                for i in range(0, len(names), 100):   # BatchGetProjects takes 100 names at most
                    answer = self.client().batch_get_projects(names=names[i:i + 100])
                    found.update(p.get("name") for p in answer.get("projects", []))
        except TargetError as exc:
            return [f"target '{self.name}': {exc}"]
        return [f"rule '{rule}' ({rules_file}:{line}): project '{run['project']}' not found in {self.region}"
                for rule, line, run in runs if run.get("project") in names and run["project"] not in found]

    # --- the client and its errors ---------------------------------------------------------

    def client(self):
        """The codebuild client (tests register botocore event hooks on it)."""
        with self._lock, self._translated(""):
            if self._client is None or (self._expires is not None
                                        and self._now() >= self._expires - REFRESH_MARGIN):
                self._client, self._expires = self._make_client()
            return self._client

    def _make_client(self):
        session = self._session or boto3.Session(profile_name=self.options.get("profile"),
                                                 region_name=self.region)
        keys: dict[str, str] = {}
        expires = None
        if self.options.get("role_arn"):
            sts = session.client("sts", region_name=self.region, config=CLIENT_CONFIG)
            creds = sts.assume_role(RoleArn=self.options["role_arn"], RoleSessionName="bridge")["Credentials"]
            keys = {"aws_access_key_id": creds["AccessKeyId"],
                    "aws_secret_access_key": creds["SecretAccessKey"],
                    "aws_session_token": creds["SessionToken"]}
            expires = creds["Expiration"]
        client = session.client("codebuild", region_name=self.region, config=CLIENT_CONFIG,
                                endpoint_url=self.options.get("endpoint_url"), **keys)
        return client, expires

    @contextmanager
    def _translated(self, project: str):
        """The one place botocore errors become ours."""
        try:
            yield
        except (bx.ClientError, bx.BotoCoreError) as exc:
            raise self._error(exc, project) from exc

    def _error(self, exc: Exception, project: str) -> TargetError:
        where = f"CodeBuild target '{self.name}'"
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code == "ResourceNotFoundException":
                return TargetRejected(f"project '{project}' not found in {self.region}")
            if code == "AccountLimitExceededException":
                return TargetUnavailable(f"{where}: the account's CodeBuild build limit in {self.region} "
                                         f"is reached ({message})")
            if code in _CREDENTIALS:
                return TargetRejected(f"{where}: AWS refused the credentials ({code}): {_CREDENTIAL_HINT}")
            if code in _TRANSIENT or status == 429 or status >= 500:
                return TargetUnavailable(f"{where}: {code or 'HTTP %d' % status} from CodeBuild in {self.region}")
            if code == "InvalidInputException":
                return TargetRejected(f"{where}: CodeBuild refused the request for project '{project}': {message}")
            return TargetRejected(f"{where}: {code or 'HTTP %d' % status}: {message}")
        if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError,
                            bx.ProfileNotFound, bx.NoRegionError)):
            return TargetRejected(f"{where}: no usable AWS credentials ({type(exc).__name__}): {_CREDENTIAL_HINT}")
        if isinstance(exc, bx.ParamValidationError):
            return TargetRejected(f"{where}: invalid request for project '{project}': {exc}")
        if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError)):
            return TargetUnavailable(f"{where}: CodeBuild in {self.region} is unreachable ({type(exc).__name__})")
        return TargetUnavailable(f"{where}: {type(exc).__name__}")
