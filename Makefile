# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: run test venv bench clean

$(BIN)/bridge: setup.cfg pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "bridge: '$(PYTHON) -m venv' failed;" \
	  "on Debian/Ubuntu install python3-venv first (apt-get install python3-venv)" >&2; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/bridge

venv: $(BIN)/bridge

# The development webhook secret the shipped rules.yaml reads, made once (a build host uses
# LoadCredential=, see the README).
var/dev-secret:
	@mkdir -p var && umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_hex(20))" > $@

run: venv var/dev-secret
	@echo "bridge: webhook secret for the shipped rules.yaml is in var/dev-secret"
	@echo "bridge: try it: $(BIN)/bridge send --source github deploy/examples/github-push.json"
	$(BIN)/bridge serve --rules rules.yaml --state-dir var --bind 127.0.0.1:8080

test: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var *.egg-info
