"""The dispatch side, after the queue: the claim loop (loop), commit statuses (statuses) and changed
files from git mirrors (changes). Imports come from the modules themselves."""
