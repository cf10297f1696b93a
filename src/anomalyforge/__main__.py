"""`python -m anomalyforge ...`: the same command line as the `anomalyforge` script."""

from anomalyforge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
