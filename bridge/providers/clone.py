"""Which hosts the git mirror may fetch from when a payload names the URL: a source's
`clone_hosts:` allow-list, or by default the host of its provider's API (github.com, gitlab.com,
a report.api_url's host).

Input: a clone URL from a payload and the source's allowed hosts. Output: why it is refused (or
None). The host is read with one strict parser: a URL another parser could read as naming a
different host (two '@', a backslash, '?', '#', a percent sign or brackets around a name) is
refused rather than guessed at.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from bridge.providers import clone_host

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = rf"{_LABEL}(?:\.{_LABEL})*\.?"
_IPV6 = r"\[[0-9a-f:.]+\]"
_HOST = re.compile(rf"(?P<host>{_NAME}|{_IPV6})(?::(?P<port>[0-9]{{1,5}}))?", re.I)
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/]*)(?P<path>/.*)?",
                     re.S)
# git's scp-like syntax: no '/' before the first ':'.
_SCP = re.compile(r"(?:(?P<user>[^@/:\[\]]+)@)?(?P<host>[^@/:\[\]]+):(?P<path>.*)", re.S)
_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git+ssh": 22, "ssh+git": 22, "git": 9418}
_AMBIGUOUS = set("\\?#%") | {"\x00"}


def parse_host(text: str) -> tuple[str, int | None] | None:
    """`host` or `host:port` (a DNS name, an IPv4 address or a bracketed IPv6 one), lower-cased,
    without a trailing dot; None when it is anything else."""
    m = _HOST.fullmatch(text or "")
    if not m:
        return None
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 < port < 65536:
        return None
    return m["host"].lower().rstrip("."), port


def url_host(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an `https://`, `ssh://` or `git@host:path` URL, read strictly;
    None when the URL names no host or names it in a way parsers could disagree on."""
    if any(c in _AMBIGUOUS for c in url):
        return None
    if m := _SCHEME.fullmatch(url):
        scheme, authority = m["scheme"].lower(), m["authority"]
        if authority.count("@") > 1:
            return None
        hostport = authority.rpartition("@")[2]
    elif m := _SCP.fullmatch(url):
        scheme, hostport = "ssh", m["host"]
    else:
        return None
    parsed = parse_host(hostport)
    if parsed is None:
        return None
    return scheme, parsed[0], parsed[1] if parsed[1] is not None else _DEFAULT_PORTS.get(scheme)


def entry_problem(entry) -> str | None:
    """What is wrong with one `clone_hosts` entry, or None."""
    if not isinstance(entry, str) or parse_host(entry) is None:
        return (f"clone_hosts entries are host names, optionally with a port (gitlab.example.com, "
                f"gitlab.example.com:2222, [2001:db8::1]), not {entry!r}")
    return None


def normalize(entries) -> tuple[str, ...]:
    """The valid entries, lower-cased, in their order."""
    out = []
    for entry in entries:
        parsed = parse_host(entry) if isinstance(entry, str) else None
        if parsed:
            out.append(parsed[0] if parsed[1] is None else f"{parsed[0]}:{parsed[1]}")
    return tuple(out)


def default_hosts(provider: str, api_url: str) -> tuple[str, ...]:
    """The hosts a source may fetch from when it lists none: the git host its API's host serves
    (on the default ports, and on the API's own port when it names one): the provider's
    `clone_host` says which (api.github.com serves github.com)."""
    try:
        host = (urlsplit(api_url).hostname or "").rstrip(".")
    except ValueError:
        return ()
    host = clone_host(provider, host)
    if not host:
        return ()
    try:
        port = urlsplit(api_url).port
    except ValueError:
        port = None
    return normalize([host] + ([f"{host}:{port}"] if port else []))


def allows(hosts, scheme: str, host: str, port: int | None) -> bool:
    """Whether an allow-list entry names the URL's host and port: `host` on its scheme's
    default port (https 443, ssh 22), `host:port` on that port only. Another port of an
    allowed host is another service: not one the operator named."""
    for entry in hosts:
        parsed = parse_host(entry)
        if parsed and parsed[0] == host and \
                port == (parsed[1] if parsed[1] is not None else _DEFAULT_PORTS.get(scheme)):
            return True
    return False


def describe(source: str | None, hosts, default: bool) -> str:
    """The allow-list as a refusal names it."""
    listed = ", ".join(hosts) if hosts else "none"
    if source is None:
        return "no source configured for this event: no hosts allowed"
    if default:
        return f"source '{source}' sets no clone_hosts, so its API's host: {listed}"
    return f"source '{source}' clone_hosts: {listed}"


def host_refusal(url: str, shown: str, hosts, where: str) -> str | None:
    """Why the mirror must not fetch `url` (a payload's URL) from its host, or None when the
    host is allowed. `shown` is the URL as it may be logged, `where` describes the allow-list."""
    found = url_host(url)
    if found is None:
        return f"refused clone URL {shown!r}: its host cannot be read unambiguously"
    scheme, host, port = found
    if allows(hosts, scheme, host, port):
        return None
    named = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    # No ';' in here: the chain joins the reasons of several URLs with it.
    return (f"refused clone URL {shown!r}: host {named} is not one the bridge fetches from "
            f"({where}), add it to the source's clone_hosts or set clone_url")
