"""Which hosts the git mirror may fetch from when a payload names the URL: a source's
`clone_hosts:` allow-list, or by default the host of its provider's API (github.com, gitlab.com,
a report.api_url's host).

Input: a clone URL from a payload and the source's allowed hosts. Output: why it is refused (or
None). The host is read with one strict parser: a URL another parser could read as naming a
different host (two '@', a backslash, '?', '#', a percent sign or brackets around a name) is
refused rather than guessed at. Also the URL rules every fetch and `cibridge check` apply:
schemes, credentials kept out of URLs (`redact`), `${repo}` in a configured `clone_url`.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from bridge.errors import did_you_mean
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


# git reads "<transport>::<address>" as a remote helper (ext::, fd::, anything installed).
_HELPER = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.-]*::")
#: Schemes a URL taken from a (signed) payload may use: never file:// or git://, which would let
#: whoever signs a delivery point the mirror at any repository the bridge user can read.
PAYLOAD_SCHEMES = ("https", "ssh")
#: Schemes a configured `clone_url` may use: the admin's choice.
CONFIG_SCHEMES = ("https", "ssh", "git", "file")
_SCHEME_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP = re.compile(r"(?:(?P<user>[^@/]*)@)?(?P<host>\[[^\]/]*\]|[^:/]+):(?P<path>.*)")
# Userinfo runs to the *last* '@' of the URL: a raw '/' in a password ('https://bot:p/ss@host')
# must not end it early. A URL ends at whitespace or a quote, as in git's messages.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"<>`]*@")
_SCHEME_ALIASES = {"git+ssh": "ssh", "ssh+git": "ssh"}
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_REPO_PART = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")


# --- URLs ---------------------------------------------------------------------------------------

def redact(text: str) -> str:
    """`text` with the userinfo of every `scheme://user:pw@host` URL in it replaced by `***`:
    everything up to the URL's last '@', so a password holding '/' or '@' never shows (an '@'
    in a path hides a little more than needed, never less)."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def _without_credentials(url: str) -> str:
    """`url` without its userinfo (the mirrors' key). Never raises, even for a malformed URL."""
    if not _SCHEME_URL.match(url):
        return url
    try:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    except ValueError:                  # e.g. "Invalid IPv6 URL": refused before any fetch
        return redact(url)


def _userinfo(url: str) -> str | None:
    """The userinfo of a `scheme://` URL as `redact` hides it, or None: everything before its
    last '@'. Wider than what `urlsplit` reads (it ends the authority at a '/', '?' or '#',
    so `https://bot:p/ss@host/x` has none there), never narrower."""
    m = _SCHEME_URL.match(url)
    if not m or "@" not in url[m.end():]:
        return None
    return url[m.end():].rpartition("@")[0]


def url_refusal(url: str, allowed: Iterable[str]) -> str | None:
    """Why git must not fetch `url`, or None. Only plain URLs of an allowed scheme pass: no
    remote helpers (`ext::`, `fd::`), nothing git or ssh could read as an option."""
    shown = redact(url)[:200]
    allowed = tuple(allowed)
    if not url or any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in url):
        return f"refused clone URL {shown!r}: empty or contains whitespace or control characters"
    if url.startswith("-"):
        return f"refused clone URL {shown!r}: it would be read as an option"
    if _HELPER.match(url):
        return f"refused clone URL {shown!r}: remote helpers ('<transport>::') are not allowed"
    if m := _SCHEME_URL.match(url):
        scheme = _SCHEME_ALIASES.get(m[1].lower(), m[1].lower())
        try:
            parts = urlsplit(url)
        except ValueError:
            return f"refused clone URL {shown!r}: not a valid URL"
        user, _, host = parts.netloc.rpartition("@")
        leading = (host, user) + ((parts.path.lstrip("/"),) if scheme == "ssh" else ())
    elif (m := _SCP.fullmatch(url)) and "/" not in url.partition(":")[0]:
        scheme, leading = "ssh", (m["host"], m["user"] or "", m["path"])
    elif url.startswith("/"):
        scheme, leading = "file", (url.lstrip("/"),)
    else:
        return f"refused clone URL {shown!r}: not a URL and not an absolute path"
    if scheme not in allowed:
        return f"refused clone URL {shown!r}: scheme {scheme!r} is not one of {', '.join(allowed)}"
    if any(part.startswith("-") for part in leading):
        return f"refused clone URL {shown!r}: a host, user or path starting with '-'"
    return None


def clone_url_problem(template) -> str | None:
    """What is wrong with a configured `clone_url`, or None: the same refusal every fetch would
    give, checked when rules.yaml is loaded. `${repo}` (owner/name, GitLab group/sub/project)
    may appear in the path, e.g. `git@github.com:${repo}.git`."""
    if not isinstance(template, str) or not template:
        return "clone_url must be a URL (https://, ssh://, git@host:path, git://, file://)"
    for name in _PLACEHOLDER.findall(template):
        if name != "repo":
            return (f"clone_url may contain only ${{repo}}, not ${{{name}}}"
                    + did_you_mean(name, ["repo"], "'${{{}}}'")
                    + " (credentials go in clone_token)")
    if m := _SCHEME_URL.match(template):
        host = template[m.end():].split("/", 1)[0]
        userinfo = _userinfo(template)
        if userinfo is not None and (m[1].lower() in ("https", "http")
                                     or ":" in userinfo.partition("@")[0]):
            # https: a user name alone may be a token (https://ghp_...@github.com); ssh: the
            # user name is no secret (ssh://git@host/path), a password (even one holding a
            # '/': ssh://git:p/ss@host/path) is.
            return ("clone_url must not carry a password or an https user name: put the token "
                    "in clone_token (a secret reference)")
    elif _SCP.fullmatch(template):
        host = template.partition(":")[0]
    else:
        host = ""
    if "${repo}" in host:
        return "clone_url may use ${repo} in its path only, not in the host or user"
    return url_refusal(template.replace("${repo}", "owner/name"), CONFIG_SCHEMES)


def expand_clone_url(template: str, repo: str) -> tuple[str, str | None]:
    """`template` with `${repo}` replaced by the event's repository, and why not (or None): a
    name from the payload goes into a URL only when every part is a plain name."""
    if "${repo}" not in template:
        return template, None
    parts = repo.split("/")
    if len(repo) > 512 or not all(_REPO_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        return template, (f"refused clone URL {redact(template)[:200]!r}: repository name "
                          f"{repo[:200]!r} cannot go into ${{repo}}")
    return template.replace("${repo}", repo), None
