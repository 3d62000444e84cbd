"""Test constants: the secrets the fixtures put in the environment and the base rules file
they write (two sources, one memory target, a rule for every branch and one for tags)."""
from __future__ import annotations

from bridge.config.load import load_config

GITHUB_SECRET = "gh-test-secret-0f3e"
GITLAB_TOKEN = "gl-test-token-9a7c"
GITEA_SECRET = "gitea-test-secret-31c"
FORGEJO_SECRET = "forgejo-test-secret-b2"
BITBUCKET_SECRET = "bb-test-secret-5d0"
#: A GitLab signing token as GitLab shows it: whsec_ and the base64 of 32 bytes.
GITLAB_SIGNING = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw7L1pXXFf7LQ="
SECRET_ENV = {"GH_SECRET": GITHUB_SECRET, "GH_SECRET_OLD": "gh-old-secret-77", "GL_TOKEN": GITLAB_TOKEN,
              "GITEA_SECRET": GITEA_SECRET, "FORGEJO_SECRET": FORGEJO_SECRET,
              "BB_SECRET": BITBUCKET_SECRET, "GL_SIGNING": GITLAB_SIGNING}

BASE_RULES = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}", "${env:GH_SECRET_OLD}"]
  gitlab:
    provider: gitlab
    secrets: ["${env:GL_TOKEN}"]
targets:
  mem:
    kind: memory
rules:
  - name: every-branch
    on: {repo: "**", branches: ["**"]}
    run: {target: mem, parameters: {SHA: "${sha}", BRANCH: "${branch}"}}
  - name: tags
    on: {repo: "**", tags: ["**"]}
    run: {target: mem, parameters: {TAG: "${tag}"}}
"""

#: One GitHub source (secret $GH_SECRET) and one memory target: a test adds its `rules:` after it.
GITHUB_TO_MEMORY = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}"]
targets:
  mem:
    kind: memory
"""

#: Every push of every GitHub repository builds on the memory target (durability normal).
BUILD_EVERY_PUSH = "settings:\n  durability: normal\n" + GITHUB_TO_MEMORY + """\
rules:
  - name: build
    on: {repo: "**", branches: ["**"]}
    run: {target: mem, parameters: {SHA: "${sha}"}}
"""

#: The base rules plus a source for each other host: Gitea, Forgejo, Bitbucket Cloud, and GitLab
#: with its signing token (`accept: signature`) and while rotating (`accept: [token, signature]`).
HOSTS_RULES = BASE_RULES.replace("targets:", """\
  gitea:
    provider: gitea
    secrets: ["${env:GITEA_SECRET}"]
  forgejo:
    provider: forgejo
    secrets: ["${env:FORGEJO_SECRET}"]
  bitbucket:
    provider: bitbucket
    secrets: ["${env:BB_SECRET}"]
  gitlab-signed:
    provider: gitlab
    secrets: ["${env:GL_SIGNING}"]
    accept: signature
  gitlab-rotating:
    provider: gitlab
    secrets: ["${env:GL_TOKEN}", "${env:GL_SIGNING}"]
    accept: [token, signature]
targets:""", 1) + """\
  - name: deletions
    on: {repo: "**", events: [delete]}
    run: {target: mem, parameters: {REF: "${ref}"}}
"""

#: A GitHub source (secret $S) and a memory target, in flow style, for the rule tests' own `rules:`.
GITHUB_TO_MEMORY_FLOW = """\
sources:
  github: {provider: github, secrets: ["${env:S}"]}
targets:
  mem: {kind: memory}
"""


def load_ruleset(tmp_path, text: str):
    """The RuleSet of rules.yaml `text`, written in tmp_path and loaded with S=x in the environment."""
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_config(path, environ={"S": "x"}).ruleset
