"""Mutation testing, the one table: module -> the file to mutate and the FAST tests that must kill
its mutants. When a module moves (issue 13), edit its `path` (and `functions`) here and nothing
else; `make mutate` stops with a clear error if a path, test file or function no longer exists.

Keys are stable names (equivalents.txt uses them). `functions` (qualified names, "Class.method")
scopes a large file to the parts named; without it the whole file is mutated.
"""

TARGETS = {
    "globs": {
        "path": "bridge/globs.py",
        "tests": ["tests/test_globs.py", "tests/test_globs_linear.py", "tests/test_glob_classes.py"],
    },
    "providers/github": {
        "path": "bridge/providers/github.py",
        "tests": ["tests/test_providers.py", "tests/test_github_push_fields.py"],
    },
    "providers/gitlab": {
        "path": "bridge/providers/gitlab.py",
        "tests": ["tests/test_providers.py", "tests/test_gitlab_system_hook.py", "tests/test_gitlab_refs.py"],
    },
    "providers/body": {
        "path": "bridge/providers/body.py",
        "tests": ["tests/test_providers.py", "tests/test_payload_helpers.py"],
    },
    "ingress": {
        "path": "bridge/web/ingress.py",
        "tests": ["tests/test_ingress.py", "tests/test_body_cap.py", "tests/test_stored_record.py",
                  "tests/test_ingress_outcomes.py"],
    },
    "rules": {
        "path": "bridge/rules.py",
        "tests": ["tests/test_rules.py", "tests/test_config.py", "tests/test_explain_files.py",
                  "tests/test_templates_render.py", "tests/test_rule_templates_check.py",
                  "tests/test_paths_recheck.py", "tests/test_rule_refs.py", "tests/test_rule_repo_case.py"],
    },
    "store/inbox": {
        "path": "bridge/store/inbox.py",
        "functions": ["Inbox.ingest", "Inbox._ingest_params", "Inbox._ingest_one",
                      "Inbox._id_taken", "Inbox._content_duplicate", "Inbox._job_rows",
                      "Inbox._insert_jobs", "reused_delivery_id", "claim_key"],
        "tests": ["tests/test_store.py", "tests/test_reused_delivery_id.py", "tests/test_ingest_batches.py"],
    },
    "store/queue": {
        "path": "bridge/store/queue.py",
        "functions": ["Queue.claim", "Queue._any_due", "Queue._pick", "Queue._finish", "Queue._finish_one",
                      "Queue.record_run"],
        "tests": ["tests/test_store.py", "tests/test_store_claims.py"],
    },
    "policies/backoff": {
        "path": "bridge/policies.py",
        "functions": ["backoff"],
        "tests": ["tests/test_dispatcher.py", "tests/test_backoff.py"],
    },
    "templates": {
        "path": "bridge/templates.py",
        "tests": ["tests/test_rules.py", "tests/test_templates_render.py", "tests/test_rule_templates_check.py",
                  "tests/test_config.py"],
    },
    "targets/exec-env": {
        "path": "bridge/targets/exec.py",
        "functions": ["ExecTarget.environment"],
        "tests": ["tests/test_exec_target.py"],
    },
}
