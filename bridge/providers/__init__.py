"""Registry of git-host providers: a plain dict from a source's `provider:` to its module, which
holds everything that host means (adding a host is one module plus its tests).

Input: a provider name from rules.yaml. Output: the module that verifies and normalizes that
host's deliveries (the `Provider` protocol below), and what callers ask of a host by name.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from urllib.parse import urlsplit

from bridge.errors import did_you_mean
from bridge.events import PULL_KINDS, Event, Ignored
from bridge.providers import bitbucket, github, gitlab
from bridge.providers.gitea import FORGEJO, GITEA
from bridge.providers.status import StatusClient


class Provider(Protocol):
    """What every provider module exposes. The ingress view calls, in this order:

    1. `verify(headers, body, secrets)` on the raw bytes, before anything is parsed. Raises
       `VerificationFailed` naming the header (never a secret or the expected value) unless one
       of `secrets` (several during a rotation) authenticates the body.
    2. `delivery_id(headers)`: the host's delivery id, or None if it sent none.
    3. `normalize(headers, body, source=, delivery_id=)`: the `Event`, or `Ignored(reason)` for
       deliveries that are fine but not a push we act on (ping, other events). Raises
       `BadPayload(reason)` for a verified body that is not JSON or not a push's shape. A host
       whose one delivery means several events (Bitbucket: one per change) also has
       `normalize_all`, giving a tuple of them (see `events_of` below).

    `verify` takes keyword options only from the source's `accept:` (GitLab: token and/or
    signature), and only for a provider that lists `ACCEPT` forms.

    `headers` is case-insensitive (werkzeug `Headers`/`EnvironHeaders`). `SECRET_HEADERS` are
    the headers that are never stored or logged; `KEEP_PREFIXES` the lower-case beginnings of
    the identification headers that are. `Statuses` posts commit statuses (providers/status.py),
    `sign` makes the headers the host would send, `clone_host` names the git host an API host
    serves, `CLONE_USER` goes with a clone token, `COMMIT_CAP` is where the host stops listing a
    push's commits (None: it says how many there were), `PUBLIC_HOST` the host whose pushes keep
    the content key they always had (without the host; None: every key names its host).
    `commits_complete` is decided by `normalize` itself, from what the payload says.
    """

    NAME: str
    TITLE: str
    SECRET_HEADERS: tuple[str, ...]
    KEEP_PREFIXES: tuple[str, ...]
    EVENT_HEADER: str
    DEFAULT_EVENT: str
    API_URL: str
    CLONE_USER: str
    COMMIT_CAP: int | None
    PUBLIC_HOST: str | None
    Statuses: type[StatusClient]

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes]) -> None: ...

    def delivery_id(self, headers: Mapping[str, str]) -> str | None: ...

    def event_name(self, headers: Mapping[str, str]) -> str: ...

    def normalize(self, headers: Mapping[str, str], body: bytes, *, source: str,
                  delivery_id: str) -> Event | Ignored: ...

    def signature(self, body: bytes, secret: bytes) -> dict[str, str]: ...

    def sign(self, body: bytes, secret: bytes, *, event: str | None = None,
             delivery: str) -> dict[str, str]: ...

    def clone_host(self, api_host: str) -> str: ...


PROVIDERS: dict[str, Provider] = {"github": github, "gitlab": gitlab, "gitea": GITEA,
                                  "forgejo": FORGEJO, "bitbucket": bitbucket}


def names() -> tuple[str, ...]:
    """The `provider:` values rules.yaml accepts, in registry order."""
    return tuple(PROVIDERS)


def _known(name) -> Provider | None:
    return PROVIDERS.get(name) if isinstance(name, str) else None


def unknown_provider_message(name: str) -> str:
    return (f"unknown provider '{name}'" + did_you_mean(name, PROVIDERS)
            + f"; known providers: {', '.join(sorted(PROVIDERS))}")


def get_provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise KeyError(unknown_provider_message(name)) from None


def default_api_url(name) -> str:
    """Where a source's commit statuses go when its `report:` names no api_url ("" if unknown)."""
    provider = _known(name)
    return provider.API_URL if provider is not None else ""


def clone_host(name, api_host: str) -> str:
    """The git host a provider's API host serves (unknown providers: the same host)."""
    provider = _known(name)
    return provider.clone_host(api_host) if provider is not None else api_host


def clone_user(name) -> str:
    """The user name a source's clone token goes with in its https clone_url."""
    provider = _known(name)
    return provider.CLONE_USER if provider is not None else github.CLONE_USER


def events_of(provider: Provider, headers: Mapping[str, str], body: bytes, *, source: str,
              delivery_id: str) -> tuple[Event, ...] | Ignored:
    """Every event one delivery means, in the host's order: one for most hosts, one per change
    for Bitbucket (never none: a delivery without any is `Ignored`)."""
    many = getattr(provider, "normalize_all", None)
    if many is not None:
        return many(headers, body, source=source, delivery_id=delivery_id)
    result = provider.normalize(headers, body, source=source, delivery_id=delivery_id)
    return result if isinstance(result, Ignored) else (result,)


def stored_body(provider: Provider, body: bytes) -> bytes:
    """The verified body as the store keeps it: byte for byte, unless the host puts a secret in
    it (old Gitea's `secret` field), which its provider takes out (`stored_body`)."""
    strip = getattr(provider, "stored_body", None)
    return body if strip is None else strip(body)


def content_key(event: Event) -> str | None:
    """What makes two deliveries the same push: provider, host, repo, ref, before, after. The
    host is the one the payload's first clone URL names, so the same repo name on two hosts
    never dedupes; pushes from a provider's public host (github.com, gitlab.com) keep the key
    they always had, without it, so an existing database still knows them. None when the event
    names no commit at all (a Gitea `delete` carries no SHA): the delivery id alone dedupes it.
    A pull request: the same change of it (number, the host's action, head, the host's
    `updated_at`); a comment: the same comment (number, comment id, action, `updated_at`)."""
    if event.kind not in PULL_KINDS and not event.before and (event.deleted or not event.after):
        return None
    provider = _known(event.provider)
    host = _host_of(event.clone_urls)
    public = provider.PUBLIC_HOST if provider is not None else None
    head = event.provider if host == public or (public is not None and not host) \
        else f"{event.provider}@{host}"
    if event.kind == "pull_request":
        return "|".join((head, event.repo, "pull", str(event.number), event.host_action, event.head_sha,
                         event.updated_at))
    if event.kind == "comment":
        return "|".join((head, event.repo, "comment", str(event.number), event.comment_id,
                         event.host_action, event.updated_at))
    return "|".join((head, event.repo, event.ref, event.before, event.after))


def _host_of(urls) -> str:
    """host[:port] of the first URL with a scheme, else of the first scp-like `user@host:path`."""
    for url in urls:
        if "://" in url:
            try:
                parts = urlsplit(url)
                host = (parts.hostname or "").rstrip(".")
                return f"{host}:{parts.port}" if parts.port else host
            except ValueError:
                return ""
    for url in urls:
        host = url.partition(":")[0].rpartition("@")[2]
        if host and "/" not in host:
            return host.lower()
    return ""


def commit_cap(name) -> int | None:
    """Where the host stops listing a push's commits, or None."""
    provider = _known(name)
    return provider.COMMIT_CAP if provider is not None else None


def status_client(name: str, api_url: str, token: str, *, timeout: float = 10.0) -> StatusClient:
    """A commit-status client for the host `name` at `api_url`, posting with `token`."""
    return get_provider(name).Statuses(api_url, token, timeout=timeout)


def host_view(row: dict) -> dict:
    """What the git host got of one stored status row (Store.statuses_of): `host_state`, the
    state in the host's own words as posted (GitHub has no "running": it got "pending"), and
    `received`, whether the host accepted the post (post_state "sent")."""
    provider = _known(row.get("provider"))
    states = provider.Statuses.states if provider is not None else {}
    return {"host_state": states.get(row["state"], row["state"]), "received": row.get("post_state") == "sent"}


def sign_headers(name: str, body: bytes, secret: bytes, *, event: str | None = None,
                 delivery: str) -> dict[str, str]:
    """The headers host `name` would send with `body` under `secret` (for `cibridge send`)."""
    return get_provider(name).sign(body, secret, event=event, delivery=delivery)


def signature_headers(name: str, body: bytes, secret: bytes) -> dict[str, str]:
    """Only the signature (or token) header host `name` would send with `body`."""
    return get_provider(name).signature(body, secret)


def kept_header_prefixes() -> tuple[str, ...]:
    """Lower-case beginnings of the hosts' identification headers a stored delivery keeps."""
    return tuple(prefix for p in PROVIDERS.values() for prefix in p.KEEP_PREFIXES)


def secret_headers() -> tuple[str, ...]:
    """Lower-case names of every host's signature and token headers: never stored or logged."""
    return tuple(h.lower() for p in PROVIDERS.values() for h in p.SECRET_HEADERS)


__all__ = ["PROVIDERS", "Provider", "clone_host", "clone_user", "commit_cap", "content_key",
           "default_api_url", "events_of",
           "get_provider", "host_view", "kept_header_prefixes", "names", "secret_headers",
           "sign_headers", "signature_headers", "status_client", "stored_body",
           "unknown_provider_message"]
