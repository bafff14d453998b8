"""``python -m cli``: the same as the ``hoist`` console script."""

from cli.app import main

main()
