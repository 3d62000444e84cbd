"""settings.ui (the delivery page's trusted proxy and user header) through the validator, and the
editor schema accepting what the validator accepts."""
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from bridge.config.load import load_config
from bridge.config.model import UiSettings
from bridge.errors import ConfigError

BASE = """\
sources:
  github: {provider: github, secrets: ["${env:GH_SECRET}"]}
targets:
  mem: {kind: memory}
rules: []
settings:
"""
ROOT = Path(__file__).resolve().parents[3]


def load(tmp_path, settings: str):
    path = tmp_path / "rules.yaml"
    path.write_text(BASE + settings, encoding="utf-8")
    return load_config(path, environ={"GH_SECRET": "s"})


def test_defaults_trust_only_the_local_host(tmp_path):
    assert load(tmp_path, "  durability: full\n").settings.ui == UiSettings(None, ("127.0.0.1", "::1"))


def test_a_user_header_and_proxies(tmp_path):
    text = "  ui:\n    trusted_user_header: X-Remote-User\n    trusted_proxies: [10.0.0.0/8, '::1']\n"
    ui = load(tmp_path, text).settings.ui
    assert ui == UiSettings("X-Remote-User", ("10.0.0.0/8", "::1"))
    schema = json.loads((ROOT / "rules.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(BASE + text), schema)


@pytest.mark.parametrize("text, message", [
    ("  ui:\n    trusted_user_header: 'X Remote'\n", "settings.ui.trusted_user_header must be a header name"),
    ("  ui:\n    trusted_proxies: [nginx.local]\n", "settings.ui.trusted_proxies must be a list of addresses"),
    ("  ui:\n    trusted_proxies: []\n", "settings.ui.trusted_proxies must be a list"),
    ("  ui:\n    trusted_user: X-User\n", "trusted_user"),
])
def test_bad_values_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert any(message in p for p in info.value.problems), info.value.problems
