"""CodeBuild for the target tests, on 127.0.0.1: moto's server behind fake AWS credentials, its
projects, and the awsJson answer that small servers of a test's own (errors moto never gives, a
recording proxy) send.

Input: a region and project names. Output: `moto_codebuild()` (the endpoint URL and a boto3
client), `aws_env()` for a child process, `send()` for a request handler.
"""
from __future__ import annotations

from contextlib import contextmanager

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

ACCOUNT = "123456789012"                                  # moto's default account
AWS_JSON = "application/x-amz-json-1.1"
#: Settings of the machine that would point boto3 at a real account: never seen by a test.
AWS_UNSET = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CODEBUILD",
             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def aws_env(region: str) -> dict[str, str]:
    """Fake credentials and no config files: boto3 (here or in a child) talks to moto only."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region, "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            "AWS_EC2_METADATA_DISABLED": "true"}


def create_project(client, name: str, location: str) -> None:
    """A CodeBuild project building the GitHub repository at `location`."""
    client.create_project(
        name=name, source={"type": "GITHUB", "location": location},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                     "computeType": "BUILD_GENERAL1_SMALL"},
        serviceRole=f"arn:aws:iam::{ACCOUNT}:role/codebuild")


@contextmanager
def moto_codebuild(region: str, projects: dict[str, str]):
    """moto's server with `projects` (name -> repository URL) in `region`, this process's
    environment faked meanwhile; yields (endpoint URL, boto3 client); reset and stopped after.
    moto's backends are per process: tests running at once take regions of their own."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**aws_env(region), "NO_PROXY": "127.0.0.1,localhost",
                           "no_proxy": "127.0.0.1,localhost"}.items():
            mp.setenv(key, value)
        for key in AWS_UNSET:
            mp.delenv(key, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("codebuild", region_name=region, endpoint_url=endpoint)
        for name, location in projects.items():
            create_project(client, name, location)
        try:
            yield endpoint, client
        finally:
            requests.post(f"{endpoint}/moto-api/reset", timeout=10)
            server.stop()


def send(handler, status: int, data: bytes, content_type: str = AWS_JSON) -> None:
    """Answer the request `handler` (a BaseHTTPRequestHandler) holds: status, type, length, body."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
