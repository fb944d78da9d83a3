"""``python -m segsim``: the command-line interface."""

from segsim.cli import main

raise SystemExit(main())
