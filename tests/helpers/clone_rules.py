"""A rules.yaml for the clone URL tests: a GitHub source with an optional extra source block and settings."""
from __future__ import annotations

import textwrap


def rules(extra_source="", settings=""):
    return textwrap.dedent("""\
        sources:
          gh:
            provider: github
            secrets: ["${env:S}"]
        """) + extra_source + textwrap.dedent("""\
        targets:
          t: {kind: memory}
        rules: []
        """) + settings
