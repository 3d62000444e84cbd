"""`cibridge send`: a payload signed with a source's first secret and POSTed, as the git host would.

Input: rules.yaml (its source and secret), a payload file, optional headers and delivery id, the
bridge's URL. Output: the bridge's status and reply on stdout; exit 1 unless it answered 2xx.
"""
from __future__ import annotations

import json
import os
import sys
import uuid

import click

from bridge.cli.common import DEFAULT_BIND, load_or_exit, rules_option
from bridge.providers import sign_headers


@click.command()
@rules_option
@click.option("--source", "source_name", required=True,
              help="source name from rules.yaml: its provider signs the payload with its first secret")
@click.option("--url", default=None, help="bridge base URL (default http://$BRIDGE_BIND)")
@click.option("--event", "event_name", default=None,
              help="event header value (default: the host's push event: push, Push Hook, repo:push)")
@click.option("--headers", "headers_file", type=click.File("rb"), default=None,
              help="JSON file of extra headers")
@click.option("--delivery", default=None, help="delivery id to send (default: a fresh one)")
@click.argument("payload", type=click.File("rb"))
def send(rules_path, source_name, url, event_name, headers_file, delivery, payload):
    """Sign a payload with the source's first secret and POST it, as its git host would (GitLab: a
    whsec_ signing token signs in Standard Webhooks form, a plain token is sent as it is)."""
    import requests
    config = load_or_exit(rules_path)
    src = config.sources.get(source_name)
    if src is None:
        click.echo(f"unknown source '{source_name}'; sources: {', '.join(config.sources)}", err=True)
        sys.exit(1)
    body = payload.read()
    headers = json.load(headers_file) if headers_file else {}
    headers.update(sign_headers(src.provider, body, src.secrets[0], event=event_name,
                                delivery=delivery or str(uuid.uuid4())))
    base = url or f"http://{os.environ.get('BRIDGE_BIND', DEFAULT_BIND)}"
    try:
        resp = requests.post(f"{base.rstrip('/')}/hooks/{source_name}", data=body, headers=headers,
                             timeout=30)
    except requests.RequestException as exc:
        click.echo(f"could not reach {base}: {exc.__class__.__name__}", err=True)
        sys.exit(1)
    click.echo(f"{resp.status_code} {resp.text.strip()}")
    sys.exit(0 if resp.ok else 1)
