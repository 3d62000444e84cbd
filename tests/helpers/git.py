"""Real git repositories for the mirror tests: Upstream (a repository the tests push to, as a
host holds it), `push` (the Event a provider would normalize from such a push), an "ssh" host
fixture and a private repository on it."""
from __future__ import annotations

import os
import stat
import subprocess
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from bridge.events import Event

# The tests' git must not read the developer's ~/.gitconfig (or the build host's /etc/gitconfig).
ISOLATED = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
GIT_ENV = {**os.environ, **ISOLATED, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com"}


class Upstream:
    """A repository the tests push to, the way a git host holds it."""

    def __init__(self, path: Path, url: str):
        self.path, self.url = path, url
        self.git("init", "-q", "-b", "main", str(path), cwd=path.parent)

    def git(self, *args: str, cwd: Path | None = None, input: bytes | None = None) -> str:
        done = subprocess.run(["git", *args], cwd=cwd or self.path, env=GIT_ENV, input=input,
                              capture_output=True, check=True)
        return done.stdout.decode().strip()

    def commit(self, changes: dict[str, str | None], message: str = "change") -> str:
        for name, content in changes.items():
            path = self.path / name
            if content is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.rev()

    def rev(self, name: str = "HEAD") -> str:
        return self.git("rev-parse", "--verify", name)

    def forget_unreachable(self) -> None:
        """What a host's gc does after a force push: the old commits are gone for good."""
        self.git("reflog", "expire", "--expire=now", "--all")
        self.git("gc", "-q", "--prune=now")


def push(url: str, before: str, after: str, *, ref: str = "refs/heads/main", commits=(),
         complete: bool = False, provider: str = "gitlab", default_branch: str = "main",
         forced: bool = False, delivery: str = "d-1") -> Event:
    """A push Event as a provider would normalize it (GitLab shape: capped commit list)."""
    return Event(provider=provider, source=provider, delivery_id=delivery,
                 kind="tag" if ref.startswith("refs/tags/") else "push", repo="acme/api", ref=ref,
                 ref_name=ref.split("/", 2)[2], before=before, after=after, sha=after,
                 created=set(before) == {"0"}, deleted=set(after) == {"0"}, forced=forced,
                 commits=tuple(commits), commits_complete=complete, default_branch=default_branch,
                 clone_urls=(url,))


@pytest.fixture
def ssh_host(tmp_path):
    """A git host reached over "ssh": GIT_SSH_COMMAND runs the remote command (`git-upload-pack
    'acme/api.git'`) in <tmp>/served, where Upstream repositories live under owner/name.git."""
    served = tmp_path / "served"
    served.mkdir()
    fake = tmp_path / "fake-ssh"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        # ssh's last argument is the command to run on the host; run it here.
        for last; do :; done
        echo "$*" >> {tmp_path / "ssh-calls"}
        echo "${{GIT_ALLOW_PROTOCOL-unset}}" >> {tmp_path / "ssh-allowed"}
        cd {served} && exec sh -c "$last"
        """))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**ISOLATED, "GIT_SSH_COMMAND": str(fake), "GIT_SSH_VARIANT": "ssh"}
    return SimpleNamespace(served=served, env=env, calls=tmp_path / "ssh-calls",
                           allowed=tmp_path / "ssh-allowed")


def private_repo(ssh_host, name="acme/api"):
    (ssh_host.served / f"{name}.git").parent.mkdir(parents=True, exist_ok=True)
    up = Upstream(ssh_host.served / f"{name}.git", f"git@git.example.invalid:{name}.git")
    before = up.commit({"a.txt": "1", "docs/x.md": "d"})
    up.commit({"src/b.py": "1"})
    after = up.commit({"a.txt": "2"})
    return up, before, after
