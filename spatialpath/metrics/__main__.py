"""``python -m spatialpath.metrics [PATH]``: write ``docs/metrics.md`` (or print it) from the registry."""

from __future__ import annotations

import sys
from pathlib import Path

from spatialpath.metrics import render_metrics_doc


def main(argv: list[str] | None = None) -> int:
    """Write the rendered registry to ``argv[0]`` (default: print to stdout)."""
    argv = sys.argv[1:] if argv is None else argv
    text = render_metrics_doc()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
