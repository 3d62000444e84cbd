"""The `cibridge` command line: `main` builds the click group from the command modules beside it."""
