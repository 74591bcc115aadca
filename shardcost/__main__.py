"""``python -m shardcost``: the command line."""

from shardcost.cli import main

raise SystemExit(main())
