"""Deployment: gunicorn settings for the bridge's web workers behind nginx on the same host.

Input: the environment (WEB_CONCURRENCY) and the CPUs this process may use. Output:
module-level gunicorn settings for `cibridge web --gunicorn-config FILE` (install.sh puts this
file at /etc/bridge/gunicorn.conf.py). The bridge sets the worker class and bind (--bind)
itself: a gthread worker that reads each request whole within rules.yaml's
settings.header_timeout and settings.body_timeout (bridge/service/webworker.py), so nothing here can
take slow-client protection away. Its --workers and settings.workers, when given, win over
`workers`. TLS or HTTP/2 in gunicorn turns the read-ahead off: terminate TLS in nginx.
"""

import os


def _cpus():
    # The CPUs this service may run on (CPUAffinity=, cpusets), not the whole machine.
    return len(os.sched_getaffinity(0))


def _workers():
    if os.environ.get("WEB_CONCURRENCY"):
        return int(os.environ["WEB_CONCURRENCY"])
    # Each worker serves several requests at once on threads, and requests wait on
    # the store's commit more than on the CPU: one per core, at least two so a
    # recycled worker never leaves nobody answering, at most eight because SQLite
    # takes one writer at a time (raise WEB_CONCURRENCY with PostgreSQL).
    return max(2, min(_cpus(), 8))


workers = _workers()

# GitHub and GitLab give up after 10 s; a worker silent for 30 s is stuck.
timeout = 30
# On reload and stop, requests in flight get this long; below TimeoutStopSec=45s.
graceful_timeout = 20
keepalive = 5

# Webhook requests are short: `POST /hooks/<source>`, about 15 headers of under
# 100 bytes each. The body cap (25 MiB) is the bridge's and nginx's.
limit_request_line = 2048
limit_request_fields = 50
limit_request_field_size = 4096
# A header whose name has an underscore could pose as another one in the WSGI environ.
header_map = "drop"

# Only nginx on this host may say a request came over https; nobody may set
# SCRIPT_NAME or PATH_INFO through headers.
forwarded_allow_ips = "127.0.0.1"
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
forwarder_headers = ""
proxy_protocol = "off"
proxy_allow_ips = "127.0.0.1"

# Heartbeat files on tmpfs: on a disk /tmp a slow fsync elsewhere can stall them.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Stop, reload and worker count are systemd's job (signals); no second control
# channel in $HOME.
control_socket_disable = True

# Logs go to journald through stderr; the bridge logs its own one line per
# decision, so no access log (it would repeat each line without the delivery id).
accesslog = None
errorlog = "-"
proc_name = "bridge-web"
