"""The clone-URL rules (bridge/providers/clone.py) at their edges, through its public functions:
ports 1-65535, a second '@', the hosts an entry allows, what a refusal names, which URLs git may
fetch, what a configured clone_url may hold, and when a payload's repo may fill `${repo}`."""
from __future__ import annotations

import pytest

from bridge.providers.clone import (CONFIG_SCHEMES, _without_credentials, PAYLOAD_SCHEMES, allows, clone_url_problem, default_hosts,
                                    describe, entry_problem, expand_clone_url, host_refusal, normalize,
                                    parse_host, redact, url_host, url_refusal)


@pytest.mark.parametrize("text, parsed", [
    ("Git.Example.com.", ("git.example.com", None)),
    ("git.example.com:1", ("git.example.com", 1)),
    ("git.example.com:65535", ("git.example.com", 65535)),
    ("git.example.com:0", None),
    ("git.example.com:65536", None),
    ("[2001:DB8::1]:22", ("[2001:db8::1]", 22)),
    ("", None),
    ("*.example.com", None),
])
def test_parse_host(text, parsed):
    assert parse_host(text) == parsed


def test_entries_and_their_normal_form():
    assert entry_problem("gitlab.example.com:2222") is None
    assert entry_problem("https://x/").startswith("clone_hosts entries are host names")
    assert entry_problem(3).endswith("not 3")
    assert normalize(["A.example.com", 3, "bad host", "b.example.com:22", "c.example.com."]) == \
        ("a.example.com", "b.example.com:22", "c.example.com")


def test_one_at_in_the_authority_is_userinfo_two_are_refused():
    assert url_host("https://user@github.com/x.git") == ("https", "github.com", 443)
    assert url_host("https://a@b@github.com/x.git") is None
    assert url_host("git://github.com/x.git") == ("git", "github.com", 9418)
    assert url_host("http://github.com/x.git") == ("http", "github.com", 80)
    assert url_host("git+ssh://github.com/x.git") == ("git+ssh", "github.com", 22)
    assert url_host("ssh+git://github.com/x.git") == ("ssh+git", "github.com", 22)
    assert url_host("foo://github.com/x.git") == ("foo", "github.com", None)


def test_default_hosts():
    assert default_hosts("github", "https://api.github.com") == ("github.com",)
    assert default_hosts("gitlab", "https://gl.example.com:8443/api/v4") == ("gl.example.com", "gl.example.com:8443")
    assert default_hosts("gitlab", "https://gl.example.com./api/v4") == ("gl.example.com",)
    assert default_hosts("gitlab", "not a url") == ()
    assert default_hosts("gitlab", "https://[::1/") == ()
    assert default_hosts("gitlab", "https://gl.example.com:bad/") == ("gl.example.com",)


def test_allows_matches_host_and_port():
    assert allows(["x.example.com"], "https", "x.example.com", 443)
    assert not allows(["x.example.com"], "https", "x.example.com", 8443)
    assert allows(["bad entry", "x.example.com:8443"], "https", "x.example.com", 8443)
    assert not allows(["y.example.com"], "https", "x.example.com", 443)
    assert not allows([], "https", "x.example.com", 443)


def test_describe():
    assert describe(None, ("a",), True) == "no source configured for this event: no hosts allowed"
    assert describe("s", ("a", "b"), True) == "source 's' sets no clone_hosts, so its API's host: a, b"
    assert describe("s", (), False) == "source 's' clone_hosts: none"


def test_host_refusal_names_the_host_and_a_port_other_than_the_default():
    assert host_refusal("https://x.example.com/r.git", "shown", ["x.example.com"], "w") is None
    assert host_refusal("https://y.example.com/r.git", "shown", ["x.example.com"], "w") == (
        "refused clone URL 'shown': host y.example.com is not one the bridge fetches from (w), add it to the "
        "source's clone_hosts or set clone_url")
    assert "host y.example.com:8443 is not one" in host_refusal("https://y.example.com:8443/r.git", "s", [], "w")
    assert "host y.example.com is not one" in host_refusal("https://y.example.com:443/r.git", "s", [], "w")
    assert host_refusal("https://a@b@x/r", "s", ["x"], "w") == \
        "refused clone URL 's': its host cannot be read unambiguously"


def test_redact_hides_everything_up_to_the_last_at():
    assert redact("fetch https://bot:p/ss@host/x and ssh://git@h/y") == "fetch https://***@host/x and ssh://***@h/y"
    assert redact("no url here") == "no url here"


def test_the_mirror_key_drops_credentials_and_never_raises():
    # dispatch/changes keys its mirrors by the URL without credentials.
    assert _without_credentials("https://bot:tok@github.com/a/b.git") == "https://github.com/a/b.git"
    assert _without_credentials("git@github.com:a/b.git") == "git@github.com:a/b.git"
    assert _without_credentials("https://bot:tok@[::1/x") == "https://***@[::1/x"


@pytest.mark.parametrize("url, why", [
    ("https://github.com/a/b.git", None),
    ("ssh://git@github.com/a/b.git", None),
    ("git+ssh://git@github.com/a/b.git", None),
    ("git@github.com:a/b.git", None),
    ("", "empty or contains whitespace or control characters"),
    ("https://github.com/a b", "empty or contains whitespace or control characters"),
    ("https://github.com/a\x7f", "empty or contains whitespace or control characters"),
    ("https://github.com/a\x1f", "empty or contains whitespace or control characters"),
    ("-uhttps://x", "it would be read as an option"),
    ("ext::sh -c x", "empty or contains whitespace or control characters"),
    ("ext::sh", "remote helpers ('<transport>::') are not allowed"),
    ("https://[::1/x", "not a valid URL"),
    ("git://github.com/a/b.git", "scheme 'git' is not one of https, ssh"),
    ("/srv/repo.git", "scheme 'file' is not one of https, ssh"),
    ("relative/path", "not a URL and not an absolute path"),
    ("ssh://-oProxyCommand=x@host/p", "a host, user or path starting with '-'"),
    ("ssh://host/-p", "a host, user or path starting with '-'"),
    ("https://host/-p", None),                          # an https path is no ssh argument
    ("-x@host:p", "it would be read as an option"),
    ("git@-host:p", "a host, user or path starting with '-'"),
    ("git@host:-p", "a host, user or path starting with '-'"),
    ("a/b:c", "not a URL and not an absolute path"),
])
def test_url_refusal_for_payload_urls(url, why):
    got = url_refusal(url, PAYLOAD_SCHEMES)
    assert (got if got is None else got.partition(": ")[2]) == why, got


def test_url_refusal_clips_the_url_it_shows_to_200_characters():
    url = "git://x/" + "a" * 300
    assert url_refusal(url, PAYLOAD_SCHEMES) == f"refused clone URL {url[:200]!r}: scheme 'git' is not one of https, ssh"
    assert url_refusal("/srv/x.git", CONFIG_SCHEMES) is None


@pytest.mark.parametrize("template, why", [
    ("git@github.com:${repo}.git", None),
    ("https://github.com/${repo}.git", None),
    ("ssh://git@host/${repo}", None),
    ("file:///srv/${repo}", None),
    ("", "clone_url must be a URL (https://, ssh://, git@host:path, git://, file://)"),
    (None, "clone_url must be a URL (https://, ssh://, git@host:path, git://, file://)"),
    ("https://h/${rpo}", "clone_url may contain only ${repo}, not ${rpo} (did you mean '${repo}'?) (credentials go in clone_token)"),
    ("https://tok@h/x", "clone_url must not carry a password or an https user name: put the token in clone_token (a secret reference)"),
    ("http://tok@h/x", "clone_url must not carry a password or an https user name: put the token in clone_token (a secret reference)"),
    ("ssh://git:p/ss@h/x", "clone_url must not carry a password or an https user name: put the token in clone_token (a secret reference)"),
    ("https://${repo}/x", "clone_url may use ${repo} in its path only, not in the host or user"),
    ("${repo}@host:x", "clone_url may use ${repo} in its path only, not in the host or user"),
    ("relative", "refused clone URL 'relative': not a URL and not an absolute path"),
])
def test_clone_url_problem(template, why):
    assert clone_url_problem(template) == why


@pytest.mark.parametrize("repo, ok", [
    ("acme/api", True), ("g/sub/p.x-y_z", True), ("a" * 512, True), ("a" * 513, False),
    ("acme/..", False), ("./x", False), ("acme/-x", False), ("acme//x", False), ("acme/a b", False),
])
def test_expand_clone_url(repo, ok):
    url, why = expand_clone_url("git@h:${repo}.git", repo)
    if ok:
        assert (url, why) == (f"git@h:{repo}.git", None)
    else:
        assert url == "git@h:${repo}.git"
        assert why == f"refused clone URL 'git@h:${{repo}}.git': repository name {repo[:200]!r} cannot go into ${{repo}}"
    assert expand_clone_url("git@h:fixed.git", "../x") == ("git@h:fixed.git", None)


def test_expand_clone_url_clips_a_long_template_in_its_refusal():
    template = "git@h:" + "x" * 300 + "/${repo}"
    assert expand_clone_url(template, "..")[1] == (f"refused clone URL {template[:200]!r}: repository name '..' "
                                                   "cannot go into ${repo}")
