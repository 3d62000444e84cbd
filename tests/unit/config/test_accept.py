"""A GitLab source's `accept:` (token, signature, or both while rotating) is checked with its line,
reaches the provider's `verify` as an option, and is refused where it means nothing (a host with
one way to sign); the editor schema knows the same words. A Gitea report names its api_url."""
from __future__ import annotations

import textwrap

import jsonschema
import pytest

from bridge.config.load import load_config
from bridge.config.schema import rules_schema
from bridge.errors import ConfigError

SIGNING = "whsec_c2lnbmluZy1rZXktZm9yLXRlc3RzLTMyLWJ5dGVzLTAx"
ENV = {"TOK": "plain-token", "SIGN": SIGNING}


def source(accept: str, secrets='["${env:TOK}", "${env:SIGN}"]', provider="gitlab") -> str:
    return textwrap.dedent(f"""\
    sources:
      gl:
        provider: {provider}
        secrets: {secrets}
        accept: {accept}
    targets:
      mem: {{kind: memory}}
    rules:
      - name: r
        on: {{repo: "**"}}
        run: {{target: mem}}
    """)


def load(tmp_path, text, environ=ENV):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_config(path, environ=environ)


def problems(tmp_path, text, environ=ENV):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, environ)
    return info.value.problems


@pytest.mark.parametrize("accept, options", [
    ("signature", {"accept": ("signature",)}),
    ("token", {"accept": ("token",)}),
    ("[token, signature]", {"accept": ("token", "signature")}),
    ("[signature, signature]", {"accept": ("signature",)}),
])
def test_accepted_forms_become_verify_options(tmp_path, accept, options):
    assert load(tmp_path, source(accept)).sources["gl"].verify_options == options


def test_without_accept_a_gitlab_source_takes_the_plain_token(tmp_path):
    text = source("token").replace("    accept: token\n", "")
    assert load(tmp_path, text).sources["gl"].verify_options == {}


@pytest.mark.parametrize("text, message", [
    (source("hmac"), "rules.yaml:5: source 'gl': accept must name token, signature or both, not hmac"),
    (source("[]"), "rules.yaml:5: source 'gl': accept must name token, signature or both, not nothing"),
    (source("{a: 1}"), "rules.yaml:5: source 'gl': accept must be one of token, signature or a list of them"),
    (source("signature", secrets='["${env:TOK}"]'),
     "rules.yaml:5: source 'gl': accept: signature needs a signing token among the secrets "
     "(whsec_ and base64, as GitLab shows it)"),
    (source("signature", provider="gitea"),
     "rules.yaml:5: source 'gl': accept is not an option of provider 'gitea' (it has one way to sign)"),
    (source("token", provider="github"),
     "rules.yaml:5: source 'gl': accept is not an option of provider 'github' (it has one way to sign)"),
], ids=["unknown-form", "empty", "mapping", "no-signing-token", "gitea", "github"])
def test_problems_with_their_line(tmp_path, text, message):
    assert message in problems(tmp_path, text)


def test_a_whsec_value_that_is_not_base64_is_no_signing_token(tmp_path):
    assert any("needs a signing token" in p for p in
               problems(tmp_path, source("signature", secrets='["${env:SIGN}"]'),
                        {"SIGN": "whsec_not base64!"}))


def test_the_schema_knows_the_same_words():
    validator = jsonschema.Draft202012Validator(rules_schema())
    base = {"sources": {"gl": {"provider": "gitlab", "secrets": "${env:X}"}}}
    for accept, ok in (("signature", True), (["token", "signature"], True), ("hmac", False), ([], False)):
        doc = {"sources": {"gl": {**base["sources"]["gl"], "accept": accept}}}
        assert (not list(validator.iter_errors(doc))) is ok, accept


def test_a_gitea_report_needs_its_api_url(tmp_path):
    text = textwrap.dedent("""\
    sources:
      gitea:
        provider: gitea
        secrets: ["${env:TOK}"]
        report: {token: "${env:TOK}"}
    targets:
      mem: {kind: memory}
    rules:
      - name: r
        on: {repo: "**"}
        run: {target: mem}
    """)
    assert problems(tmp_path, text) == [
        "rules.yaml:5: source 'gitea' report: api_url is required: provider 'gitea' has no public API "
        "address (e.g. https://gitea.example.com/api/v1)"]
