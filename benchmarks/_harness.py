"""Run a benchmark case in a fresh Python process and report wall time and peak memory.

Each case is a snippet with a ``setup`` part (imports, warm-up: not timed) and a ``run`` part
(timed). The child reports the time of ``run`` and its own peak resident set size, so one case's
memory never inflates another's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_CHILD = """
import json, resource, time
{setup}
t0 = time.perf_counter()
{run}
elapsed = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
print("__RESULT__" + json.dumps({{"seconds": elapsed, "peak_gib": peak}}))
"""


def run_case(setup: str, run: str) -> dict[str, float]:
    """Time ``run`` after ``setup`` in a new interpreter; return seconds and peak GiB."""
    code = _CHILD.format(setup=textwrap.dedent(setup), run=textwrap.dedent(run))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("__RESULT__"))
    return json.loads(line[len("__RESULT__") :])


def print_table(rows: list[tuple[str, dict[str, float], str]]) -> None:
    """Print a Markdown table of (case, result, budget) rows."""
    print("| case | seconds | peak RSS (GiB) | budget |")
    print("|---|---|---|---|")
    for name, r, budget in rows:
        print(f"| {name} | {r['seconds']:.2f} | {r['peak_gib']:.2f} | {budget} |")
