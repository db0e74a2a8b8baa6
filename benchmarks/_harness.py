"""Run a benchmark case in a fresh Python process and report wall time and peak memory.

Each case is a snippet with a ``setup`` part (imports, warm-up: not timed) and a ``run`` part
(timed). The child reports the time of ``run`` and its own peak resident set size, so one case's
memory never inflates another's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

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


#: setup code shared by the statistics benchmarks (statistics.md §13, setup A): ``cells(n, seed)``
#: gives n uniform cells on a √n·20 µm square (1 cell/400 µm²), 12 uniform types in
#: ``obs["cell_type"]``, and squidpy's directed 6-NN graph. Prepend it to a case's setup.
UNIFORM_CELLS = """
import warnings
import numpy as np, pandas as pd, anndata as ad
import squidpy as sq

warnings.filterwarnings("ignore")


def cells(n, seed=0):
    rng = np.random.default_rng(seed)
    types = pd.Categorical.from_codes(rng.integers(0, 12, n), ["type" + str(i) for i in range(12)])
    a = ad.AnnData(obs=pd.DataFrame(dict(cell_type=types), index=np.arange(n).astype(str)))
    a.obsm["spatial"] = rng.uniform(0, np.sqrt(n) * 20.0, (n, 2))
    sq.gr.spatial_neighbors_knn(a, n_neighs=6)
    return a
"""


#: appended to the setup: forget the setup's memory peak (Linux ``clear_refs``), remember the RSS.
_MARK = """
import gc
gc.collect()
def _vm(field):
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith(field)) / 1024**2  # KiB -> GiB
_rss0 = _vm("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
"""


def timed(setup: str, run: str) -> dict[str, float]:
    """``run_case`` plus the CPU seconds (all threads) and the peak RSS growth of the timed block.

    The two extra numbers are written by the child to a file: ``cpu_seconds`` and
    ``delta_peak_gib`` (peak RSS during the timed block minus the RSS before it).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "extra"
        record = f"open({str(out)!r}, 'w').write(f'{{time.process_time() - _c0}} {{_vm(\"VmHWM\") - _rss0}}')"
        r = run_case(setup + _MARK, f"_c0 = time.process_time()\n{run}\n{record}")
        cpu, delta = out.read_text().split()
    return {**r, "cpu_seconds": float(cpu), "delta_peak_gib": float(delta)}


def print_timed_table(rows: list[tuple[str, dict[str, float] | None, str]]) -> None:
    """Markdown table of :func:`timed` results: (case, result or None for a skipped case, budget)."""
    print("| case | wall s | CPU s | peak RSS (GiB) | Δ peak in the timed block (GiB) | budget |")
    print("|---|---|---|---|---|---|")
    for name, r, budget in rows:
        if r is None:
            print(f"| {name} | - | - | - | - | {budget} |")
            continue
        print(
            f"| {name} | {r['seconds']:.3f} | {r['cpu_seconds']:.2f} | {r['peak_gib']:.2f} "
            f"| {r['delta_peak_gib']:.3f} | {budget} |"
        )
