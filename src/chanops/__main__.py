"""`python -m chanops`: the same as the `chanops` command."""

from chanops.cli import main

main()
