"""``python -m spatialpath``: the command-line interface."""

from spatialpath.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
