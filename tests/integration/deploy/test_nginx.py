"""deploy/nginx-bridge.conf: the body cap is the bridge's, only hooks and healthz pass to the local
bridge, and nginx accepts the site."""
from __future__ import annotations

import re
import shutil

import pytest
from helpers.deploy import NGINX_CONF, run, unit


# --- deploy/nginx-bridge.conf ------------------------------------------------------------------

def nginx_directives(text: str) -> list[tuple[tuple[str, ...], str]]:
    """(enclosing block headers, directive) for every directive of an nginx file."""
    out, stack = [], []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.endswith("{"):
            stack.append(" ".join(line[:-1].split()))
        elif line == "}":
            stack.pop()
        else:
            out.append((tuple(stack), line.rstrip(";")))
    assert not stack, "unbalanced braces"
    return out


def nginx_size(value: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    assert m, value
    return int(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2).lower()]


def test_nginx_body_cap_is_the_bridges():
    from bridge.config.model import Settings
    caps = [d.split()[1] for _, d in nginx_directives(NGINX_CONF.read_text())
            if d.startswith("client_max_body_size ")]
    assert caps and all(nginx_size(c) == Settings().max_body_bytes for c in caps), caps


def test_nginx_passes_only_hooks_healthz_and_the_delivery_page_to_the_local_bridge():
    directives = nginx_directives(NGINX_CONF.read_text())
    proxied = {blocks[-1]: d.split()[1] for blocks, d in directives if d.startswith("proxy_pass ")}
    bind = next(e.split("=", 1)[1] for e in unit("bridge.service")["Environment"]
                if e.startswith("BRIDGE_BIND="))
    assert proxied == {"location /hooks/": f"http://{bind}", "location = /healthz": f"http://{bind}",
                       "location /bridge/ui/": f"http://{bind}/ui/",
                       "location = /bridge/api/explain": f"http://{bind}/api/explain"}
    for page in ("location /bridge/ui/", "location = /bridge/api/explain"):
        sets = [d for blocks, d in directives if blocks[-1:] == (page,)]
        assert "proxy_set_header X-Forwarded-Prefix /bridge" in sets      # links under the prefix
        assert 'proxy_set_header X-Remote-User ""' in sets                # no user named by a sender
    # Everything else (/metrics, /readyz) ends at nginx.
    catch_all = [d for blocks, d in directives
                 if blocks == ("server", "location /") and d.startswith("return ")]
    assert "return 404" in catch_all
    assert not any("metrics" in " ".join(blocks) or "readyz" in " ".join(blocks)
                   for blocks, _ in directives)
    hooks = [d for blocks, d in directives if blocks[-1:] == ("location /hooks/",)]
    assert "proxy_set_header X-Forwarded-For $remote_addr" in hooks      # overwritten, not appended
    assert "proxy_set_header X-Forwarded-Proto $scheme" in hooks
    tls = [d for blocks, d in directives if blocks == ("server",)]
    assert "listen 443 ssl" in tls and any(d.startswith("ssl_certificate ") for d in tls)


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None,
                    reason="nginx (or openssl) is not installed; the config is checked by parsing only")
def test_nginx_accepts_the_site(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=bridge.example.com", "-keyout", str(key), "-out", str(cert)])
    assert made.returncode == 0, made.stderr
    site = (NGINX_CONF.read_text()
            .replace("/etc/letsencrypt/live/bridge.example.com/fullchain.pem", str(cert))
            .replace("/etc/letsencrypt/live/bridge.example.com/privkey.pem", str(key))
            .replace("/var/log/nginx/", f"{tmp_path}/"))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n  include {tmp_path}/site.conf;\n}}\n")
    result = run(["nginx", "-t", "-e", "stderr", "-p", str(tmp_path),
                  "-c", str(tmp_path / "nginx.conf")])
    assert result.returncode == 0, result.stderr
