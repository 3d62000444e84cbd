"""Mutation testing, the one table: module -> the file to mutate and the FAST tests that must kill
its mutants. When a module moves (issue 13), edit its `path` (and `functions`) here and nothing
else; `make mutate` stops with a clear error if a path, test file or function no longer exists.

Keys are stable names (equivalents.txt uses them). `functions` (qualified names, "Class.method")
scopes a large file to the parts named; without it the whole file is mutated.
"""

TARGETS = {
    "globs": {
        "path": "bridge/globs.py",
        "tests": ["tests/unit/test_glob_sharing.py", "tests/unit/test_globs.py", "tests/unit/test_globs_linear.py", "tests/unit/test_glob_classes.py"],
    },
    "providers/github": {
        "path": "bridge/providers/github.py",
        "tests": ["tests/unit/providers/test_registry_and_signatures.py", "tests/unit/providers/test_github.py", "tests/unit/providers/test_gitlab.py", "tests/unit/providers/test_bad_bodies.py", "tests/unit/providers/test_github_push_fields.py",
                  "tests/integration/cli/test_send_signing.py", "tests/integration/web/test_pull_payloads.py",
                  "tests/integration/web/test_pull_comments.py"],
    },
    "providers/github_api": {
        "path": "bridge/providers/github_api.py",
        "tests": ["tests/unit/providers/test_github_pull_head.py",
                  "tests/unit/providers/test_github_reconcile_api.py", "tests/unit/providers/test_status_clients.py",
                  "tests/unit/providers/test_status_answers.py", "tests/unit/providers/test_hostapi.py",
                  "tests/integration/web/test_pull_payloads.py", "tests/integration/dispatch/test_pull_jobs.py",
                  "tests/integration/dispatch/test_reconcile_github.py",
                  "tests/integration/providers/test_clone_hosts.py"],
    },
    "providers/gitlab": {
        "path": "bridge/providers/gitlab.py",
        "tests": ["tests/unit/providers/test_gitlab.py", "tests/unit/providers/test_host_signatures.py",
                  "tests/unit/config/test_accept.py", "tests/unit/providers/test_registry_and_signatures.py",
                  "tests/unit/providers/test_github.py", "tests/unit/providers/test_bad_bodies.py",
                  "tests/integration/web/test_gitlab_system_hook.py", "tests/unit/providers/test_gitlab_refs.py",
                  "tests/integration/cli/test_send_signing.py", "tests/integration/web/test_pull_payloads.py",
                  "tests/integration/web/test_pull_comments.py"],
    },
    "providers/gitlab_api": {
        "path": "bridge/providers/gitlab_api.py",
        "tests": ["tests/unit/providers/test_gitlab_reconcile_api.py", "tests/unit/providers/test_status_clients.py",
                  "tests/unit/providers/test_status_answers.py", "tests/unit/providers/test_hostapi.py",
                  "tests/integration/dispatch/test_pull_jobs.py",
                  "tests/integration/dispatch/test_reconcile_gitlab.py",
                  "tests/integration/providers/test_clone_hosts.py"],
    },
    "providers/hmacsig": {
        "path": "bridge/providers/hmacsig.py",
        "tests": ["tests/unit/providers/test_host_signatures.py", "tests/unit/providers/test_registry_and_signatures.py",
                  "tests/unit/providers/test_github.py"],
    },
    "providers/body": {
        "path": "bridge/providers/body.py",
        "tests": ["tests/unit/providers/test_registry_and_signatures.py", "tests/unit/providers/test_github.py", "tests/unit/providers/test_gitlab.py", "tests/unit/providers/test_bad_bodies.py", "tests/unit/test_helpers_payloads.py",
                  "tests/unit/providers/test_body.py"],
    },
    "providers/clone": {
        "path": "bridge/providers/clone.py",
        "tests": ["tests/unit/providers/test_clone_rules.py", "tests/unit/providers/test_registry_and_signatures.py",
                  "tests/integration/providers/test_clone_hosts.py",
                  "tests/integration/config/test_clone_url_settings.py", "tests/integration/dispatch/test_payload_urls.py"],
    },
    "providers/gitea": {
        "path": "bridge/providers/gitea.py",
        "tests": ["tests/unit/providers/test_gitea_pull_head.py", "tests/unit/providers/test_gitea_fields.py",
                  "tests/unit/providers/test_host_signatures.py",
                  "tests/unit/providers/test_registry_and_signatures.py",
                  "tests/unit/providers/test_content_keys.py", "tests/unit/providers/test_host_status_clients.py",
                  "tests/integration/web/test_gitea_payloads.py", "tests/integration/web/test_gitea_pulls.py",
                  "tests/integration/web/test_host_refusals.py", "tests/integration/cli/test_send_signing.py",
                  "tests/integration/dispatch/test_gitea_comment_head.py"],
    },
    "providers/bitbucket": {
        "path": "bridge/providers/bitbucket.py",
        "tests": ["tests/unit/providers/test_bitbucket_pull_forks.py", "tests/unit/providers/test_bitbucket_fields.py", "tests/unit/providers/test_host_signatures.py", "tests/unit/providers/test_registry_and_signatures.py",
                  "tests/unit/providers/test_content_keys.py", "tests/unit/providers/test_host_status_clients.py",
                  "tests/integration/web/test_bitbucket_payloads.py", "tests/integration/web/test_bitbucket_pulls.py", "tests/integration/web/test_host_refusals.py",
                  "tests/integration/cli/test_send_signing.py", "tests/integration/cli/test_hosts_replay.py"],
    },
    "ingress": {
        "path": "bridge/web/ingress.py",
        "tests": ["tests/integration/web/test_duplicate_reasons.py", "tests/integration/web/test_ingress_many.py",
                  "tests/integration/web/test_ingress.py", "tests/integration/web/test_body_cap.py", "tests/integration/web/test_stored_record.py",
                  "tests/integration/web/test_ingress_outcomes.py", "tests/integration/web/test_bitbucket_payloads.py"],
    },
    "rules": {
        "path": "bridge/rules.py",
        "tests": ["tests/unit/test_rules.py", "tests/unit/config/test_load.py", "tests/integration/cli/test_explain_files.py",
                  "tests/unit/test_templates_render.py", "tests/unit/test_rule_templates_check.py",
                  "tests/unit/dispatch/test_paths_recheck.py", "tests/unit/test_rule_refs.py", "tests/unit/test_rule_repo_case.py",
                  "tests/unit/test_nearest.py", "tests/unit/config/test_policy.py",
                  "tests/integration/web/test_pull_payloads.py", "tests/integration/web/test_pull_comments.py",
                  "tests/integration/dispatch/test_pull_actions_table.py", "tests/unit/test_rule_groups.py"],
    },
    "store/inbox": {
        "path": "bridge/store/inbox.py",
        "functions": ["Inbox.ingest", "Inbox.ingest_all", "Inbox._ingest_several", "Inbox._ingest_params", "Inbox._ingest_one",
                      "Inbox._id_taken", "Inbox._content_duplicate", "Inbox._job_rows",
                      "Inbox._insert_jobs", "reused_delivery_id", "claim_key"],
        "tests": ["tests/integration/store/test_inbox.py", "tests/integration/store/test_queue.py", "tests/integration/store/test_reused_delivery_id.py", "tests/integration/store/test_ingest_batches.py",
                  "tests/unit/test_claim_key.py", "tests/integration/store/test_ingest_all.py"],
    },
    "store/queue": {
        "path": "bridge/store/queue.py",
        "functions": ["Queue.claim", "Queue._any_due", "Queue._pick_raw", "Queue._lease_raw",
                      "Queue._job", "Queue._pick_policed", "Queue._admit", "Queue._finish", "Queue._finish_one",
                      "Queue.record_run"],
        "tests": ["tests/integration/store/test_policed_pages.py", "tests/integration/store/test_inbox.py",
                  "tests/integration/store/test_queue.py", "tests/integration/store/test_store_claims.py",
                  "tests/integration/store/test_policies.py"],
    },
    "policies/backoff": {
        "path": "bridge/policies.py",
        "functions": ["backoff"],
        "tests": ["tests/unit/dispatch/test_jobs.py", "tests/unit/test_backoff.py"],
    },
    "templates": {
        "path": "bridge/templates.py",
        "tests": ["tests/unit/test_rules.py", "tests/unit/test_templates_render.py", "tests/unit/test_rule_templates_check.py",
                  "tests/unit/config/test_load.py"],
    },
    "targets/exec-env": {
        "path": "bridge/targets/exec.py",
        "functions": ["ExecTarget.environment"],
        "tests": ["tests/unit/targets/test_exec.py"],
    },
}
