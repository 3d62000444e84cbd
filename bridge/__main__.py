"""`python -m bridge`: the same as the `cibridge` command."""
from bridge.cli.main import main

main()
