"""``python -m shardcost``: the command line."""

if __name__ == "__main__":
    from shardcost.entry import main

    raise SystemExit(main())
