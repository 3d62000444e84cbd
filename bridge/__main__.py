"""`python -m bridge`: the same as the `cibridge` command."""
from .cli import main

main()
