"""The classes rules.yaml is validated with (`target_spec`) are the running targets' own keys and
checks, and importing them imports no target's client library (boto3, python-jenkins)."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

from bridge.targets import TARGET_KINDS, TARGET_SPECS, target_class, target_spec

CLIENTS = {"boto3", "botocore", "jenkins", "git", "requests"}


@pytest.mark.parametrize("kind", sorted(TARGET_KINDS))
def test_each_kind_is_validated_with_a_base_of_the_class_that_runs_it(kind):
    spec, cls = target_spec(kind), target_class(kind)
    assert issubclass(cls, spec) and spec.kind == cls.kind == kind
    for attr in ("config_keys", "run_keys", "literal_keys", "secret_keys", "validate",
                 "validate_run", "with_state_dir", "literal_message"):
        # the very objects, found on the spec: the running class redefines none of them
        assert inspect.getattr_static(spec, attr, None) is inspect.getattr_static(cls, attr, None), attr


def test_the_two_tables_name_the_same_kinds():
    assert set(TARGET_SPECS) == set(TARGET_KINDS)
    with pytest.raises(KeyError, match="unknown target kind 'jenkin'.*jenkins"):
        target_spec("jenkin")


def test_the_specs_import_no_client_library():
    probe = ("import json, sys\nfrom bridge.targets import TARGET_SPECS, target_spec\n"
             "[target_spec(k) for k in TARGET_SPECS]\nprint(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not {m.split(".")[0] for m in json.loads(out.stdout)} & CLIENTS
