"""The dispatch side, after the queue: the claim loop (loop) running one job at a time (run_job) and
following builds (follow), commit statuses (statuses), changed files (changes: the payload's own
lists in bridge/payload_files.py, git mirrors in mirror and mirror_git), and recovering missed
deliveries (reconcile: the hosts' delivery logs in redeliver, branch heads and tags in watch).
Imports come from the modules themselves."""
