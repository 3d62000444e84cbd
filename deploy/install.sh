#!/bin/sh
# Install or upgrade the bridge on a Debian build host: the bridge user, its
# directories, a virtual environment, the systemd units. Run it again to
# upgrade; it changes only what differs. See --help.
set -eu

SERVICE_USER=bridge
CONF_DIR=/etc/bridge
STATE_DIR=/var/lib/bridge
UNIT_DIR=/etc/systemd/system
UNITS="bridge.service bridge-web.service bridge-dispatcher.service bridge-reload.path bridge-reload.service"
# The path the units in systemd/ are written for; rewritten to --prefix.
UNIT_PREFIX=/opt/bridge

CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/bridge
SOURCE=$CHECKOUT
# Debian's own interpreter: one under /root or /home (pyenv, ...) would be
# hidden from the service by ProtectHome=yes.
PYTHON=/usr/bin/python3
DRY_RUN=0
# The dependency lock (pinned versions with their hashes, made by `make lock`): base is the
# service on SQLite; --postgres takes the one with psycopg for a postgresql:// database_url.
LOCK=
POSTGRES=0

usage() {
    cat <<EOF
Usage: deploy/install.sh [--prefix DIR] [--from PATH] [--python PYTHON] [--postgres]
                         [--lock FILE] [--dry-run]

Install or upgrade the bridge on this host:
  - the '$SERVICE_USER' system user (home $STATE_DIR),
  - $CONF_DIR (rules.yaml, gunicorn.conf.py) and $CONF_DIR/credentials,
  - a virtual environment at PREFIX/venv: the dependencies exactly as locked
    (pip --require-hashes), then the bridge itself (--no-deps),
  - bridge.service, bridge-web.service, bridge-dispatcher.service and the
    optional bridge-reload.path/.service (not enabled) in $UNIT_DIR,
  - then 'systemctl daemon-reload'.
Running it again changes only what differs. It never touches rules.yaml or
credentials, and never starts or restarts a service.

Options:
  --prefix DIR     where the virtual environment goes (default: $PREFIX)
  --from PATH      a bridge checkout or a .whl file (default: $CHECKOUT)
  --python PYTHON  interpreter for the virtual environment, 3.10 or newer
                   (default: $PYTHON)
  --postgres       also install psycopg (settings.database_url: postgresql://):
                   requirements/postgres.lock instead of requirements/base.lock
  --lock FILE      install the dependencies from this lock file instead
  --dry-run        print what would be done; change nothing
  -h, --help       show this help
EOF
}

die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

say() {
    printf '%s\n' "$*"
}

# Runs a command that changes the host, or only prints it with --dry-run.
run() {
    line=+
    for arg in "$@"; do
        case $arg in
            ''|*[!A-Za-z0-9_./:=@%+,-]*) line="$line '$arg'" ;;
            *) line="$line $arg" ;;
        esac
    done
    say "$line"
    if [ "$DRY_RUN" = 0 ]; then
        "$@"
    fi
}

need_value() {
    [ "$2" -ge 2 ] || die "$1 needs a value"
}

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) need_value "$1" $#; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --from) need_value "$1" $#; SOURCE=$2; shift 2 ;;
        --from=*) SOURCE=${1#*=}; shift ;;
        --python) need_value "$1" $#; PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#*=}; shift ;;
        --postgres) POSTGRES=1; shift ;;
        --lock) need_value "$1" $#; LOCK=$2; shift 2 ;;
        --lock=*) LOCK=${1#*=}; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; printf '\ninstall.sh: unknown argument: %s\n' "$1" >&2; exit 2 ;;
    esac
done

# The prefix ends up in ExecStart= lines and in a sed replacement.
case $PREFIX in
    /*) ;;
    *) die "--prefix must be an absolute path, not '$PREFIX'" ;;
esac
case $PREFIX in
    *[!A-Za-z0-9/._-]*) die "--prefix may hold only letters, digits and / . _ -: '$PREFIX'" ;;
esac
while [ "$PREFIX" != / ] && [ "${PREFIX%/}" != "$PREFIX" ]; do
    PREFIX=${PREFIX%/}
done
case $PREFIX in
    /|/home|/home/*|/root|/root/*) die "--prefix $PREFIX: pick a directory the service may read (ProtectHome=yes)" ;;
esac
VENV=$PREFIX/venv

if [ -d "$SOURCE" ]; then
    [ -f "$SOURCE/setup.cfg" ] || die "--from $SOURCE: not a bridge checkout (no setup.cfg)"
    SOURCE=$(cd "$SOURCE" && pwd)
else
    case $SOURCE in
        *.whl) [ -f "$SOURCE" ] || die "--from $SOURCE: no such file" ;;
        *) die "--from $SOURCE: neither a checkout nor a .whl file" ;;
    esac
fi

for unit in $UNITS; do
    [ -f "$CHECKOUT/systemd/$unit" ] || die "missing $CHECKOUT/systemd/$unit"
done
if [ -z "$LOCK" ]; then
    if [ "$POSTGRES" = 1 ]; then
        LOCK=$CHECKOUT/requirements/postgres.lock
    else
        LOCK=$CHECKOUT/requirements/base.lock
    fi
fi
[ -f "$LOCK" ] || die "no lock file $LOCK (make lock writes them)"

command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON: apt-get install python3 python3-venv"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "$PYTHON is older than 3.10"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
    die "$PYTHON cannot make a virtual environment: apt-get install python3-venv"
case $("$PYTHON" -c 'import sys; print(sys.base_prefix)') in
    /home/*|/root/*) die "$PYTHON lives under /home or /root, which the service cannot see (ProtectHome=yes)" ;;
esac
command -v git >/dev/null 2>&1 ||
    say "warning: no git on this host; the bridge needs it for changed files (apt-get install git openssh-client)"

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (or with --dry-run to see what it would do)"
fi
if [ "$DRY_RUN" = 1 ]; then
    say "dry run: nothing is changed"
fi

# What root creates must stay readable by the service user.
umask 022

# ensure_dir MODE OWNER:GROUP DIR
ensure_dir() {
    if [ -d "$3" ] && [ "$(stat -c '%a %U:%G' "$3")" = "$1 $2" ]; then
        say "ok: $3"
    else
        run install -d -m "$1" -o "${2%:*}" -g "${2#*:}" "$3"
    fi
}

# put_unit MODE SOURCE DEST: the unit with /opt/bridge rewritten to PREFIX,
# written only when that differs, through a rename so systemd never reads half
# a file.
put_unit() {
    if sed "s#$UNIT_PREFIX/#$PREFIX/#g" "$2" | cmp -s - "$3" 2>/dev/null; then
        say "ok: $3"
        return
    fi
    say "+ write $3 (from $2, $UNIT_PREFIX -> $PREFIX)"
    if [ "$DRY_RUN" = 0 ]; then
        sed "s#$UNIT_PREFIX/#$PREFIX/#g" "$2" > "$3.tmp"
        chmod "$1" "$3.tmp"
        mv -f "$3.tmp" "$3"
    fi
}

# 1. The service user. A static one, see systemd/bridge.service.
if getent passwd "$SERVICE_USER" >/dev/null; then
    say "ok: user $SERVICE_USER"
else
    if getent group "$SERVICE_USER" >/dev/null; then
        group_option="--gid $SERVICE_USER"
    else
        group_option=--user-group
    fi
    run useradd --system $group_option --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "bridge webhook service" "$SERVICE_USER"
fi

# 2. Directories. systemd would create the last two at start; creating them
#    now lets the admin put rules, credentials and ssh keys in place first.
ensure_dir 755 root:root "$PREFIX"
ensure_dir 755 root:root "$CONF_DIR"
# Readable by the service user too: the operator commands run as that user
# outside the unit, with CREDENTIALS_DIRECTORY pointing here.
ensure_dir 750 "root:$SERVICE_USER" "$CONF_DIR/credentials"
ensure_dir 700 "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"

# 3. The virtual environment, owned by root: the service cannot change its own code.
if [ -x "$VENV/bin/python" ]; then
    say "ok: $VENV"
else
    run "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/pip --disable-pip-version-check"
# Every dependency at its locked version, each file checked against its hash; then the bridge
# itself without dependencies, so nothing unlocked comes in.
run $PIP install --quiet --root-user-action=ignore --require-hashes -r "$LOCK"
run $PIP install --quiet --root-user-action=ignore --no-deps "$SOURCE"
case $SOURCE in
    # A rebuilt wheel keeps its version number, and pip skips a version it has.
    *.whl) run $PIP install --quiet --root-user-action=ignore --no-deps --force-reinstall "$SOURCE" ;;
esac
if [ "$DRY_RUN" = 0 ]; then
    "$VENV/bin/cibridge" --help >/dev/null || die "$VENV/bin/cibridge does not run"
fi

# 4. Configuration: gunicorn.conf.py is the admin's once installed.
if [ ! -e "$CONF_DIR/gunicorn.conf.py" ]; then
    run install -m 644 -o root -g root "$CHECKOUT/deploy/gunicorn.conf.py" "$CONF_DIR/gunicorn.conf.py"
elif cmp -s "$CHECKOUT/deploy/gunicorn.conf.py" "$CONF_DIR/gunicorn.conf.py"; then
    say "ok: $CONF_DIR/gunicorn.conf.py"
else
    say "kept: $CONF_DIR/gunicorn.conf.py differs from deploy/gunicorn.conf.py (diff them to review)"
fi

# 5. Units; changes and credentials belong in drop-ins, which survive this.
for unit in $UNITS; do
    put_unit 644 "$CHECKOUT/systemd/$unit" "$UNIT_DIR/$unit"
done
if [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
else
    say "skipped: systemctl daemon-reload (systemd is not running here)"
fi

say "optional: systemctl enable --now bridge-reload.path (reloads when rules.yaml changes, after cibridge check)"
if [ ! -e "$CONF_DIR/rules.yaml" ]; then
    say "next: write $CONF_DIR/rules.yaml (root:$SERVICE_USER, mode 640), then: systemctl enable --now bridge"
else
    say "next: systemctl enable --now bridge (after an upgrade: systemctl restart bridge)"
fi
