"""`python -m synthloop ...` is the `synthloop` command."""

from .cli import main

main()
