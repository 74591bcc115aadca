"""``python -m shardcost``: the command line."""

if __name__ == "__main__":
    from shardcost.cli import main

    raise SystemExit(main())
