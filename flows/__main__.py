"""`python -m flows ...` is the `synthloop` command."""

from .cli import main

main()
