"""Crash safety and concurrency of the per-image store (issue 8).

Writers run in separate Python processes and are killed with ``os._exit`` or SIGKILL at the
worst moments; the store must then show the image as "missing", hold no partial final file and
recover on the next write. Several processes writing at once must leave a consistent store,
exclusion log and hash cache.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spatialpath.pipeline._exclusions import ExclusionLog
from spatialpath.pipeline._hashing import HashCache
from spatialpath.pipeline._store import MARKER, ImageStore

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")

COMMON = """
import numpy as np, pandas as pd

def make_tables(seed, n_rows):
    rng = np.random.default_rng(seed)
    return {
        f"t{k}": pd.DataFrame({"x": rng.normal(size=n_rows), "y": rng.normal(size=n_rows),
                               "i": rng.integers(0, 1 << 40, n_rows)})
        for k in range(4)
    }
"""
ns: dict = {}
exec(COMMON, ns)
make_tables = ns["make_tables"]

WRITER = (
    COMMON
    + """
import os, sys, time
from spatialpath.pipeline import _store
root, mode, stage, target, seed, n_rows = sys.argv[1:7]
tables = make_tables(int(seed), int(n_rows))

def hook(kind, final, tmp):
    if kind == stage and final.name == target:
        assert tmp.exists() and tmp.stat().st_size > 0 and not final.name.startswith(".")
        if mode == "exit":
            os._exit(1)
        print("READY", flush=True)
        time.sleep(120)

if mode in ("exit", "wait"):
    _store._TEST_HOOK = hook
if mode == "loop":  # rewrite the image forever, alternating two results, until killed
    versions = [make_tables(int(seed), int(n_rows)), make_tables(int(seed) + 1, int(n_rows))]
    store = _store.ImageStore(root)
    store.write_result(("S1", "img1"), "fp1", versions[1], seed=1)  # the kill lands in a rewrite
    print("START", flush=True)
    i = 0
    while True:
        store.write_result(("S1", "img1"), f"fp{i % 2}", versions[i % 2], seed=1)
        i += 1
print("START", flush=True)
_store.ImageStore(root).write_result(("S1", "img1"), "fp", tables, seed=1)
print("DONE", flush=True)
"""
)
N_ROWS = 300_000  # ~7 MB per table, 4 tables
KEY = ("S1", "img1")


def _writer(root, mode, stage="-", target="-", seed=0, n_rows=N_ROWS):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), mode, stage, target, str(seed), str(n_rows)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


def _kill_when(proc, line, delay=0.0):
    while (got := proc.stdout.readline().strip()) not in (line, ""):  # "" = the writer ended
        pass
    if got != line:
        proc.kill()
        pytest.fail(f"the writer ended before printing {line}: {proc.stderr.read()}")
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _finals_and_debris(folder: Path):
    names = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    return [n for n in names if not n.startswith(".")], [n for n in names if n.startswith(".")]


def _assert_recovers(store, expected):
    store.write_result(KEY, "fp", expected, seed=1)
    assert store.status(KEY, "fp", verify="hash") == "current"
    finals, debris = _finals_and_debris(store.folder(KEY))
    assert debris == []
    assert finals == [MARKER, "t0.parquet", "t1.parquet", "t2.parquet", "t3.parquet"]
    res = store.read_result(KEY)
    for name, df in expected.items():
        pd.testing.assert_frame_equal(res.tables[name], df)


@pytest.mark.parametrize(
    ("stage", "target", "finals_left"),
    [
        ("table", "t2.parquet", ["t0.parquet", "t1.parquet"]),
        ("marker", MARKER, [f"t{k}.parquet" for k in range(4)]),
    ],
    ids=["between-temp-and-rename-of-a-table", "between-temp-and-rename-of-the-marker"],
)
def test_os_exit_inside_write_leaves_missing_and_debris_only(tmp_path, stage, target, finals_left):
    proc = _writer(tmp_path, "exit", stage, target)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    store = ImageStore(tmp_path)
    expected = make_tables(0, N_ROWS)
    finals, debris = _finals_and_debris(store.folder(KEY))
    assert finals == finals_left  # no partial final file: the interrupted one is absent
    for name in finals:  # and every final file present is complete
        pd.testing.assert_frame_equal(pd.read_parquet(store.folder(KEY) / name), expected[name[:-8]])
    assert len(debris) == 1
    assert debris[0].startswith(f".{target}.")
    assert ".tmp" in debris[0]
    assert store.status(KEY, "fp") == "missing"
    with pytest.raises(FileNotFoundError, match=r"no _done\.json"):
        store.read_result(KEY)
    _assert_recovers(store, expected)


def test_sigkill_during_rewrite_never_leaves_old_result_current(tmp_path):
    store = ImageStore(tmp_path)
    old = make_tables(9, 1000)
    store.write_result(KEY, "fp_old", old)
    proc = _writer(tmp_path, "wait", "table", "t1.parquet")
    _kill_when(proc, "READY")  # SIGKILL while t1's temporary file is complete but not renamed
    new = make_tables(0, N_ROWS)
    assert store.status(KEY, "fp_old") == "missing"
    assert store.status(KEY, "fp") == "missing"
    finals, debris = _finals_and_debris(store.folder(KEY))
    assert finals == ["t0.parquet", "t1.parquet", "t2.parquet", "t3.parquet"]
    assert len(debris) == 1
    folder = store.folder(KEY)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "t0.parquet"), new["t0"])  # rewritten
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "t1.parquet"), old["t1"])  # untouched, whole
    _assert_recovers(store, new)


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.37, 0.83])
def test_sigkill_at_an_arbitrary_moment(tmp_path, delay):
    n_rows = 100_000
    proc = _writer(tmp_path, "loop", n_rows=n_rows)  # rewrites the image until killed
    _kill_when(proc, "START", delay)
    store = ImageStore(tmp_path)
    versions = [make_tables(0, n_rows), make_tables(1, n_rows)]
    states = [store.status(KEY, f"fp{v}", verify="hash") for v in (0, 1)]
    assert sorted(states) in (["missing", "missing"], ["current", "stale"])  # no marker, or a whole one
    finals, _ = _finals_and_debris(store.folder(KEY))
    for name in finals:  # every final table is whole: one of the two versions
        if name != MARKER:
            got = pd.read_parquet(store.folder(KEY) / name)
            assert any(got.equals(v[name[:-8]]) for v in versions), name
    if "current" in states:  # the marker's result is exactly its version
        v = states.index("current")
        res = store.read_result(KEY)
        for name, df in versions[v].items():
            pd.testing.assert_frame_equal(res.tables[name], df)
    assert (MARKER in finals) == ("current" in states)
    _assert_recovers(store, make_tables(0, N_ROWS))


CONCURRENT = (
    COMMON
    + """
import os, sys, time
from pathlib import Path
from spatialpath.pipeline._store import ImageStore
from spatialpath.pipeline._exclusions import ExclusionLog
from spatialpath.pipeline._hashing import HashCache
root, w = Path(sys.argv[1]), int(sys.argv[2])
store, log = ImageStore(root), ExclusionLog(root)
print("READY", flush=True)
while not (root / "go").exists():
    time.sleep(0.01)
for j in range(3):
    store.write_result((f"S{j % 2}", f"p{w}_img{j}"), f"fp{w}{j}", make_tables(10 * w + j, 2000), seed=j)
try:
    raise RuntimeError(f"worker {w} failed")
except RuntimeError as err:
    log.record(("S0", f"p{w}_bad"), err, fingerprint=f"fp{w}")
cache = HashCache.in_folder(root)
for j in range(3):
    cache.hash_file(root.parent / "inputs" / f"in{w}_{j}.bin")
cache.save()
print("OK", flush=True)
"""
)


def test_concurrent_writers_leave_a_consistent_store(tmp_path):
    root, inputs = tmp_path / "out", tmp_path / "inputs"
    inputs.mkdir()
    root.mkdir()
    n_workers = 4
    for w in range(n_workers):
        for j in range(3):
            p = inputs / f"in{w}_{j}.bin"
            p.write_bytes(bytes([w, j]) * 1000)
            os.utime(p, ns=(10**18, 10**18))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(root), str(w)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(n_workers)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "READY", p.stderr.read()
    (root / "go").touch()  # all start writing at once
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "OK", err

    store, log = ImageStore(root), ExclusionLog(root)
    for w in range(n_workers):
        for j in range(3):
            key = (f"S{j % 2}", f"p{w}_img{j}")
            assert store.status(key, f"fp{w}{j}", verify="hash") == "current"
            res = store.read_result(key)
            for name, df in make_tables(10 * w + j, 2000).items():
                pd.testing.assert_frame_equal(res.tables[name], df)
    assert len(store.images()) == 3 * n_workers
    merged = log.merge()
    assert merged["image_id"].tolist() == [f"p{w}_bad" for w in range(n_workers)]
    assert merged["message"].tolist() == [f"worker {w} failed" for w in range(n_workers)]
    assert [store.status(("S0", f"p{w}_bad"), f"fp{w}") for w in range(n_workers)] == ["failed"] * n_workers
    cache = HashCache.in_folder(root)  # every worker's entries survived the concurrent saves
    for w in range(n_workers):
        for j in range(3):
            assert cache.hash_file(inputs / f"in{w}_{j}.bin") is not None
    assert cache.reads == 0
    assert store.clean_temp() == []
    assert np.all([not n.startswith(".") for n in os.listdir(root)])
