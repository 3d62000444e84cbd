# The two commands of the README: `make run` and `make test`. `make lock` refreshes the locks.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/pip --disable-pip-version-check
# The dependency locks, generated from setup.cfg by `make lock` (pip-compile, with hashes):
# base = the service on SQLite, postgres = with the postgres extra, test = the development venv.
LOCKS   = requirements/base.lock requirements/postgres.lock requirements/test.lock
LOCK_VENV ?= .venv-lock
COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
          --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host

.PHONY: run test venv lock lock-upgrade bench clean mutate

# One line per step, and pip's own line per package: about a minute on a fresh machine.
$(BIN)/cibridge: setup.cfg pyproject.toml requirements/test.lock
	@echo "bridge: [1/3] virtual environment $(VENV)"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "bridge: '$(PYTHON) -m venv' failed;" \
	  "on Debian/Ubuntu install python3-venv first (apt-get install python3-venv)" >&2; exit 1; }
	@echo "bridge: [2/3] locked dependencies, hash-checked (requirements/test.lock)"
	$(PIP) install --progress-bar off --require-hashes -r requirements/test.lock
	@echo "bridge: [3/3] bridge itself, editable, without dependencies (the lock has them all)"
	$(PIP) install --progress-bar off --no-deps -e .
	@touch $(BIN)/cibridge
	@echo "bridge: $(VENV) is ready"

venv: $(BIN)/cibridge

# The development webhook secret the shipped rules.yaml reads, made once (a build host uses
# LoadCredential=, see the README).
var/dev-secret:
	@mkdir -p var && umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_hex(20))" > $@

run: venv var/dev-secret
	@echo "bridge: webhook secret for the shipped rules.yaml is in var/dev-secret"
	@echo "bridge: try it: $(BIN)/cibridge send --source github deploy/examples/github-push.json"
	$(BIN)/cibridge serve --rules rules.yaml --state-dir var --bind 127.0.0.1:8080

test: venv
	$(BIN)/lint-imports --config setup.cfg
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Mutation testing (slow, not part of `make test`): every module of tests/mutation/targets.py, or
# one: `make mutate MODULE=ingress`. MUTATE_ARGS passes options (-j 2, -v, --fail-under 90).
mutate: venv
	$(BIN)/python tests/mutation/run.py $(MUTATE_ARGS) $(MODULE)

# pip-compile in a venv of its own (pip-tools is a tool for us, not a dependency of the bridge).
$(LOCK_VENV)/bin/pip-compile:
	@echo "bridge: installing pip-tools into $(LOCK_VENV)"
	@$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --disable-pip-version-check --progress-bar off pip-tools

# Regenerate the locks from setup.cfg: pins that still fit are kept, new dependencies added.
# The test lock is solved first; the others are constrained to it, so every lock pins the same
# version of a package. `make lock-upgrade` moves every pin to the newest release that fits.
lock: $(LOCK_VENV)/bin/pip-compile
	$(COMPILE) $(LOCK_ARGS) --extra postgres --extra test -o requirements/test.lock setup.cfg
	$(COMPILE) $(LOCK_ARGS) -c requirements/test.lock --extra postgres -o requirements/postgres.lock setup.cfg
	$(COMPILE) $(LOCK_ARGS) -c requirements/test.lock -o requirements/base.lock setup.cfg

lock-upgrade:
	$(MAKE) lock LOCK_ARGS=--upgrade

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(LOCK_VENV) var *.egg-info
