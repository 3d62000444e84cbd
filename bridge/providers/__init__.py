"""Registry of git-host providers: a plain dict from a source's `provider:` to its module.

Input: a provider name from rules.yaml. Output: the module that verifies and normalizes that
host's deliveries (the `Provider` protocol below).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from bridge.errors import did_you_mean
from bridge.events import Event, Ignored
from bridge.providers import github, gitlab


class Provider(Protocol):
    """What every provider module exposes. The ingress view calls, in this order:

    1. `verify(headers, body, secrets)` on the raw bytes, before anything is parsed. Raises
       `VerificationFailed` naming the header (never a secret or the expected value) unless one
       of `secrets` (several during a rotation) authenticates the body.
    2. `delivery_id(headers)`: the host's delivery id, or None if it sent none.
    3. `normalize(headers, body, source=, delivery_id=)`: the `Event`, or `Ignored(reason)` for
       deliveries that are fine but not a push we act on (ping, other events). Raises
       `BadPayload(reason)` for a verified body that is not JSON or not a push's shape.

    `headers` is case-insensitive (werkzeug `Headers`/`EnvironHeaders`). `SECRET_HEADERS` are
    the headers that are never stored or logged.
    """

    NAME: str
    SECRET_HEADERS: tuple[str, ...]

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[bytes]) -> None: ...

    def delivery_id(self, headers: Mapping[str, str]) -> str | None: ...

    def event_name(self, headers: Mapping[str, str]) -> str: ...

    def normalize(self, headers: Mapping[str, str], body: bytes, *, source: str,
                  delivery_id: str) -> Event | Ignored: ...


PROVIDERS: dict[str, Provider] = {"github": github, "gitlab": gitlab}


def unknown_provider_message(name: str) -> str:
    return (f"unknown provider '{name}'" + did_you_mean(name, PROVIDERS)
            + f"; known providers: {', '.join(sorted(PROVIDERS))}")


def get_provider(name: str) -> Provider:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise KeyError(unknown_provider_message(name)) from None


__all__ = ["PROVIDERS", "Provider", "get_provider", "unknown_provider_message"]
