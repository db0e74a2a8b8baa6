"""Fingerprints, the hash cache, the per-image store, seeds and the exclusion log (issue 8)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from spatialpath.model import DataModelError
from spatialpath.pipeline import _hashing
from spatialpath.pipeline._exclusions import COLUMNS, ExclusionLog
from spatialpath.pipeline._hashing import HashCache, canonical_json, fingerprint, package_versions
from spatialpath.pipeline._seeds import image_seed, image_seed_sequence
from spatialpath.pipeline._store import MARKER, ImageStore, as_key, check_ids, id_from_name, safe_name

H1, H2 = "a" * 64, "b" * 64
OLD_NS = 1_000_000_000_000_000_000  # 2001-09-09: an input file untouched for years


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- fingerprints --------------------------------------------------------------------------------


def test_fingerprint_is_sha256_of_documented_canonical_json():
    params = {"radius_um": 30.0, "markers": ("CD3", "CD8"), "n_perms": np.int64(199)}
    versions = {"spatialpath": "1.0", "numpy": "2.0"}
    # independent reference: the payload written out by hand, serialised by the json module
    text = (
        '{"inputs":{"cells":"' + H1 + '"},"parameters":{"markers":["CD3","CD8"],"n_perms":199,'
        '"radius_um":30.0},"schema":1,"versions":{"numpy":"2.0","spatialpath":"1.0"}}'
    )
    assert fingerprint(params, {"cells": H1}, versions) == _sha(text.encode())


def test_fingerprint_sensitivity_and_key_order():
    base = {"a": 1, "nested": {"x": [1, 2], "y": "z"}, "t": 0.5}
    versions = dict(package_versions())
    fp = fingerprint(base, {"cells": H1}, versions)
    reordered = {"t": 0.5, "nested": {"y": "z", "x": (1, 2)}, "a": 1}
    assert fingerprint(reordered, {"cells": H1}, versions) == fp
    changed = [
        fingerprint({**base, "t": 0.25}, {"cells": H1}, versions),  # one parameter
        fingerprint({**base, "a": 1.0}, {"cells": H1}, versions),  # 1 -> 1.0 is a change
        fingerprint({**base, "nested": {"x": [2, 1], "y": "z"}}, {"cells": H1}, versions),  # list order
        fingerprint(base, {"cells": H2}, versions),  # one input
        fingerprint(base, {"image": H1}, versions),  # input role
        fingerprint(base, {"cells": H1}, {**versions, "numpy": "0.0.1"}),  # a package version
        fingerprint(base, {"cells": H1}, {**versions, "spatialpath": "99"}),
    ]
    assert len(set(changed) | {fp}) == len(changed) + 1
    assert fingerprint(base, {"cells": H1}) == fp  # default versions = package_versions()


def test_package_versions_cover_core_dependencies():
    from importlib import metadata

    v = package_versions()
    assert v["numpy"] == np.__version__
    assert v["pandas"] == pd.__version__
    assert v["scikit-learn"] == metadata.version("scikit-learn")
    assert v["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    import spatialpath

    assert v["spatialpath"] == spatialpath.__version__


def test_fingerprint_same_in_fresh_process(tmp_path):
    params = {"b": [1, 2.5, None], "a": {"k": True}, "s": {3, 1, 2}}
    fp = fingerprint(params, {"cells": H1})
    same = "{'s': {2, 3, 1}, 'a': {'k': True}, 'b': [1, 2.5, None]}"  # another order, another process
    code = "from spatialpath.pipeline._hashing import fingerprint\n"
    code += f"print(fingerprint({same}, {{'cells': {H1!r}}}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == fp


def test_fingerprint_errors():
    with pytest.raises(ValueError, match=r"inputs\['cells'\] = 'abc' is not a SHA-256"):
        fingerprint({}, {"cells": "abc"})
    with pytest.raises(TypeError, match=r"parameters\['m'\] has the key 1 of type int"):
        fingerprint({"m": {1: 2}}, {})
    with pytest.raises(TypeError, match=r"parameters\['f'\] is a builtins.function, which has no canonical"):
        canonical_json({"f": lambda: 0})


def test_hash_cache_values_and_what_it_detects(tmp_path):
    f = tmp_path / "cells.csv"
    f.write_bytes(b"x,y\n1,2\n")
    os.utime(f, ns=(OLD_NS, OLD_NS))
    cache = HashCache.in_folder(tmp_path)
    assert cache.hash_file(f) == _sha(b"x,y\n1,2\n")
    # same size, mtime restored: NOT detected by path+size+mtime (documented); verify="hash" is
    f.write_bytes(b"x,y\n9,2\n")
    os.utime(f, ns=(OLD_NS, OLD_NS))
    assert cache.hash_file(f) == _sha(b"x,y\n1,2\n")
    assert cache.hash_file(f, verify="hash") == _sha(b"x,y\n9,2\n")
    # a size change and an mtime change are detected
    f.write_bytes(b"x,y\n9,20\n")
    os.utime(f, ns=(OLD_NS, OLD_NS))
    assert cache.hash_file(f) == _sha(b"x,y\n9,20\n")
    f.write_bytes(b"x,y\n9,21\n")
    os.utime(f, ns=(OLD_NS + 1, OLD_NS + 1))
    assert cache.hash_file(f) == _sha(b"x,y\n9,21\n")
    assert cache.reads == 4
    # a file modified just now is "racily clean": its entry is not trusted, it is re-read
    g = tmp_path / "fresh.csv"
    g.write_bytes(b"new")
    cache.hash_file(g), cache.hash_file(g)
    assert cache.reads == 6
    with pytest.raises(ValueError, match="verify='mtime'; use 'stat'"):
        cache.hash_file(f, verify="mtime")


def test_hash_cache_avoids_rereading_large_file(tmp_path, monkeypatch):
    big = tmp_path / "image.tif"
    data = np.random.default_rng(0).integers(0, 255, 32 << 20, dtype=np.uint8).tobytes()  # 32 MiB
    big.write_bytes(data)
    os.utime(big, ns=(OLD_NS, OLD_NS))
    expected = _sha(data)
    first = HashCache.in_folder(tmp_path / "out")
    assert first.hash_inputs({"image": big}) == {"image": expected}
    assert first.reads == 1
    first.save()
    saved = json.loads((tmp_path / "out" / "_input_hashes.json").read_text())
    entry = saved["entries"][str(big.resolve())]
    assert (entry["size"], entry["mtime_ns"], entry["sha256"]) == (32 << 20, OLD_NS, expected)

    calls = []
    monkeypatch.setattr(_hashing, "sha256_file", lambda p: calls.append(p) or "0" * 64)
    second = HashCache.in_folder(tmp_path / "out")  # a new run: loads the saved cache
    assert second.hash_file(big) == expected
    assert second.reads == 0
    assert calls == []
    assert second.hash_file(big, verify="hash") == "0" * 64
    assert len(calls) == 1


def test_hash_cache_folder_input(tmp_path):
    outs = tmp_path / "xenium_outs"
    (outs / "cells").mkdir(parents=True)
    files = {"cells/cells.parquet": b"cells", "transcripts.csv": b"t1", "a.txt": b"zz"}
    for rel, data in files.items():
        (outs / rel).write_bytes(data)
    (outs / ".DS_Store").write_bytes(b"finder")  # hidden files are skipped
    lines = sorted(f"{rel}\0{_sha(data)}\n" for rel, data in files.items())
    cache = HashCache.in_folder(tmp_path)
    assert cache.hash_file(outs) == _sha("".join(lines).encode())
    (outs / "cells" / "more.csv").write_bytes(b"")
    assert cache.hash_file(outs) != _sha("".join(lines).encode())


def test_hash_cache_unreadable_file_warns(tmp_path):
    (tmp_path / "_input_hashes.json").write_text("{not json")
    with pytest.warns(UserWarning, match="ignoring the unreadable hash cache"):
        cache = HashCache.in_folder(tmp_path)
    f = tmp_path / "a.txt"
    f.write_bytes(b"abc")
    assert cache.hash_file(f) == _sha(b"abc")
    cache.save()
    assert json.loads((tmp_path / "_input_hashes.json").read_text())["schema_version"] == 1


# -- the store -----------------------------------------------------------------------------------


def _tables():
    rng = np.random.default_rng(1)
    cells = pd.DataFrame(
        {
            "x_um": rng.normal(size=50),
            "area": rng.integers(10, 99, 50).astype("int32"),
            "type": pd.Categorical(rng.choice(["T", "B", "tumour"], 50)),
            "name": [f"c{i}" for i in range(50)],
            "positive": rng.random(50) > 0.5,
            "score": pd.array([1, None] * 25, dtype="Int64"),
        },
        index=pd.Index([f"cell{i}" for i in range(50)], name="cell_id"),
    )
    cells.loc["cell3", "x_um"] = np.nan
    cells.attrs["params"] = {"radius_um": 30.0}
    summary = pd.DataFrame({"metric": ["density"], "value": [0.1 + 0.2]})
    return {"cells": cells, "summary": summary}


def _figure():
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1])
    return fig


def test_round_trip_exact(tmp_path):
    store = ImageStore(tmp_path, dpi=100)
    key = ("S 1", "img/1")
    tables, fig = _tables(), _figure()
    marker = store.write_result(
        key,
        "fp1",
        tables,
        {"overview": fig},
        {"n": np.int64(50), "v": np.float32(0.5)},
        seed=123,
        timings={"compute_s": 1.5},
    )
    plt.close(fig)
    folder = tmp_path / "images" / "S%201" / "img%2F1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "_done.json",
        "cells.parquet",
        "overview.png",
        "summary.parquet",
    ]
    res = store.read_result(key)
    for name, df in tables.items():
        pd.testing.assert_frame_equal(res.tables[name], df)
    assert res.tables["cells"].attrs == {"params": {"radius_um": 30.0}}
    assert res.tables["summary"]["value"].iloc[0] == 0.30000000000000004
    assert mpimg.imread(res.figures["overview"]).shape[:2] == (150, 200)  # figsize x dpi
    assert res.extra == {"n": 50, "v": 0.5}
    on_disk = json.loads((folder / MARKER).read_text())
    assert on_disk["seed"] == 123
    assert on_disk["fingerprint"] == "fp1"
    assert on_disk["timings"]["compute_s"] == 1.5
    assert on_disk["timings"]["write_s"] > 0
    for f in on_disk["files"]:
        raw = (folder / f["name"]).read_bytes()
        assert (f["size_bytes"], f["sha256"]) == (len(raw), _sha(raw))
    assert marker.files[0].name == "cells.parquet"
    assert store.images() == [as_key(key)]


def test_status_transitions(tmp_path):
    store = ImageStore(tmp_path)
    key = ("S1", "img1")
    assert store.status(key, "fp1") == "missing"
    store.write_result(key, "fp1", _tables())
    assert store.status(key, "fp1") == "current"
    assert store.status(key, "fp2") == "stale"
    store.write_result(key, "fp2", {"summary": _tables()["summary"]})
    assert store.status(key, "fp2") == "current"
    folder = store.folder(key)
    assert not (folder / "cells.parquet").exists()  # the older result's file was removed
    (folder / "summary.parquet").unlink()
    assert store.status(key, "fp2") == "missing"
    with pytest.raises(FileNotFoundError, match=r"summary.parquet is missing; run the pipeline"):
        store.read_result(key)
    store.write_result(key, "fp2", _tables())
    # same-size corruption: invisible to the size check, caught by verify="hash"
    p = folder / "summary.parquet"
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    assert store.status(key, "fp2") == "current"
    assert store.status(key, "fp2", verify="hash") == "missing"
    p.write_bytes(bytes(raw[:-1]))  # a truncated file: size check
    assert store.status(key, "fp2") == "missing"
    store.write_result(key, "fp2", _tables())
    assert store.invalidate(key)
    assert store.status(key, "fp2") == "missing"
    assert not store.invalidate(key)
    store.write_result(key, "fp2", _tables())
    shutil.rmtree(tmp_path / "images" / "S1")
    assert store.status(key, "fp2") == "missing"
    with pytest.raises(ValueError, match="verify='full'"):
        store.status(key, "fp2", verify="full")


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda t: t[: len(t) // 2],  # a partial marker
        lambda t: "",
        lambda t: t.replace('"schema_version": 1', '"schema_version": 2'),
        lambda t: t.replace('"fingerprint"', '"fingerprint_"'),
        lambda t: t.replace('"name": "cells.parquet"', '"name": "../cells.parquet"'),
    ],
    ids=["truncated", "empty", "schema", "field", "path-escape"],
)
def test_corrupted_marker_is_not_current(tmp_path, corrupt):
    store = ImageStore(tmp_path)
    store.write_result(("S1", "img1"), "fp", _tables())
    marker = store.folder(("S1", "img1")) / MARKER
    marker.write_text(corrupt(marker.read_text()))
    assert store.status(("S1", "img1"), "fp") == "missing"
    with pytest.raises(FileNotFoundError, match=r"unreadable _done\.json"):
        store.read_result(("S1", "img1"))
    assert store.images() == []


def test_temp_debris_is_ignored_and_cleaned(tmp_path):
    store = ImageStore(tmp_path)
    key = ("S1", "img1")
    folder = store.folder(key)
    folder.mkdir(parents=True)
    debris = folder / ".cells.parquet.k2j3h4.tmp.parquet"
    debris.write_bytes(b"PAR1 partial")
    assert store.status(key, "fp") == "missing"
    store.write_result(key, "fp", _tables())
    assert not debris.exists()
    assert store.status(key, "fp") == "current"
    stray = [
        tmp_path / "._input_hashes.json.abc.tmp.json",
        tmp_path / "exclusions" / "S1" / ".x.json.q.tmp.json",
    ]
    for s in stray:
        s.parent.mkdir(parents=True, exist_ok=True)
        s.write_text("{")
    assert store.clean_temp(older_than_s=3600) == []
    assert store.clean_temp() == sorted(stray)
    assert store.status(key, "fp") == "current"


def test_safe_names_are_distinct_reversible_and_valid(tmp_path):
    ids = ["a", "A1", "a b", "a%20b", "a/b", "a\\b", "..", ".", ".hidden", "x.", "CON", "con.txt", "~x",
           "ü", "u\u0308", "日本", "a" * 300, "a" * 299 + "b", "TMA_1-core.3"]  # fmt: skip
    names = [safe_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert names[:3] == ["a", "A1", "a%20b"]
    assert names[-1] == "TMA_1-core.3"
    for i, n in zip(ids, names, strict=True):
        assert "/" not in n
        assert "\\" not in n
        assert not n.startswith(".")
        assert not n.endswith(".")
        assert len(n) <= 150
        assert id_from_name(n) == (None if len(i) >= 150 else i)
        (tmp_path / n).mkdir()  # a valid, distinct folder name
    assert len(list(tmp_path.iterdir())) == len(ids)


def test_id_errors_and_case_collisions(tmp_path):
    with pytest.raises(DataModelError, match="image_id = 3: image IDs must be non-empty str"):
        as_key(("S1", 3))
    with pytest.raises(DataModelError, match="is not an image key"):
        as_key("S1/img1")
    with pytest.raises(DataModelError, match="differs from \\('S1', 'core_a1'\\) only in letter case"):
        check_ids([("S1", "core_a1"), ("S1", "core_A1")])
    with pytest.raises(DataModelError, match="is listed twice"):
        check_ids([("S1", "x"), ("S1", "x")])
    # a folder holding another image's marker (what a case-insensitive file system would do)
    store = ImageStore(tmp_path)
    store.write_result(("S1", "a"), "fp", {})
    store.folder(("S1", "b")).mkdir(parents=True)
    shutil.copy(store.folder(("S1", "a")) / MARKER, store.folder(("S1", "b")) / MARKER)
    with pytest.raises(DataModelError, match=r"belongs to image \('S1', 'a'\), not \('S1', 'b'\)"):
        store.status(("S1", "b"), "fp")


def test_write_errors(tmp_path):
    store = ImageStore(tmp_path)
    key = ("S1", "img1")
    with pytest.raises(DataModelError, match="table name '_done' is not allowed"):
        store.write_result(key, "fp", {"_done": pd.DataFrame()})
    with pytest.raises(DataModelError, match="figure name 'a/b' is not allowed"):
        store.write_result(key, "fp", figures={"a/b": None})
    with pytest.raises(DataModelError, match=r"tables\['t'\] is a ndarray; pass a pandas DataFrame"):
        store.write_result(key, "fp", {"t": np.zeros(3)})
    with pytest.raises(DataModelError, match=r"non-str column names \[0\]"):
        store.write_result(key, "fp", {"t": pd.DataFrame({0: [1]})})
    with pytest.raises(TypeError, match=r"extra\['obj'\] is a builtins.object"):
        store.write_result(key, "fp", extra={"obj": object()})
    assert store.status(key, "fp") == "missing"


# -- seeds ---------------------------------------------------------------------------------------


def _reference_seed_sequence(seed, sample_id, image_id):
    h = hashlib.sha256(b"spatialpath.pipeline.image_seed.v1\x00")
    for part in (sample_id.encode(), image_id.encode()):
        h.update(len(part).to_bytes(8, "little") + part)
    d = h.digest()
    words = [int.from_bytes(d[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.SeedSequence(seed, spawn_key=words)


def test_seed_matches_independent_seedsequence():
    for seed, s, i in [(0, "S1", "img1"), (2**40 + 3, "patient 7", "ROI_003"), (5, "日本", "x")]:
        ref = _reference_seed_sequence(seed, s, i)
        assert image_seed(seed, s, i) == int(ref.generate_state(1, np.uint32)[0]) & 0x7FFFFFFF
        a = np.random.default_rng(image_seed_sequence(seed, s, i)).random(5)
        np.testing.assert_array_equal(a, np.random.default_rng(ref).random(5))


def test_seeds_independent_of_order_and_distinct():
    ids = [(f"S{k % 7}", f"img{k}") for k in range(300)]
    forward = {k: image_seed(42, *k) for k in ids}
    shuffled = [*ids[::-1], ("S_new", "img_new")]
    random.Random(0).shuffle(shuffled)
    assert {k: image_seed(42, *k) for k in shuffled if k in forward} == forward
    assert len(set(forward.values())) == 300
    assert all(0 <= v < 2**31 for v in forward.values())
    assert image_seed(42, "ab", "c") != image_seed(42, "a", "bc")
    assert image_seed(42, "S1", "img1") != image_seed(43, "S1", "img1")
    x = np.random.default_rng(image_seed_sequence(42, "S1", "img1")).random(20_000)
    y = np.random.default_rng(image_seed_sequence(42, "S1", "img2")).random(20_000)
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.03  # 4 s.d. of a null correlation


def test_seed_errors():
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        image_seed(-1, "S1", "img1")
    with pytest.raises(TypeError, match=r"seed must be a non-negative integer, got float 1\.5"):
        image_seed(1.5, "S1", "img1")
    with pytest.raises(TypeError, match="image_id must be a str, got int"):
        image_seed(0, "S1", 7)


# -- exclusions ----------------------------------------------------------------------------------


class SegmentationError(RuntimeError):
    pass


def _load_image():
    raise OSError("truncated TIFF strip 12")


def _segment():
    try:
        _load_image()
    except OSError as err:
        raise SegmentationError("cannot segment img2") from err


def test_exclusion_records_traceback_merge_and_clear(tmp_path):
    store = ImageStore(tmp_path)
    log = ExclusionLog(tmp_path)
    for img in ("img2", "img3"):
        try:
            _segment()
        except SegmentationError as err:
            rec = log.record(("S1", img), err, fingerprint="fp", seed=image_seed(0, "S1", img))
    try:
        _segment()
    except SegmentationError as err:  # the same image failing again: still one record
        log.record(("S1", "img2"), err, fingerprint="fp")
    try:
        {}["cells"]
    except KeyError as err:
        log.record(("S 2", "img1"), err, fingerprint="fp")
    assert rec["error_type"].endswith("test_store.SegmentationError")
    assert rec["message"] == "cannot segment img2"
    tb = rec["traceback"]
    needles = [
        "in _segment",
        "in _load_image",
        "OSError: truncated TIFF strip 12",
        "The above exception was the direct cause",
        "SegmentationError: cannot segment img2",
    ]
    for needle in needles:
        assert needle in tb
    assert store.status(("S1", "img2"), "fp") == "failed"
    assert store.status(("S1", "img2"), "fp_new") == "missing"  # the failure was of another computation

    merged = log.merge()
    assert list(merged.columns) == COLUMNS
    assert merged[["sample_id", "image_id"]].values.tolist() == [
        ["S 2", "img1"],
        ["S1", "img2"],
        ["S1", "img3"],
    ]
    assert merged["error_type"].tolist()[0] == "KeyError"
    js = json.loads((tmp_path / "exclusions.json").read_text())
    assert js["n_excluded"] == 3
    assert js["records"][2]["seed"] == image_seed(0, "S1", "img3")
    csv = pd.read_csv(tmp_path / "exclusions.csv")
    assert csv["traceback"].tolist() == merged["traceback"].tolist()  # multi-line text survives CSV

    store.write_result(("S1", "img2"), "fp", {"summary": _tables()["summary"]})  # a later success
    assert log.get(("S1", "img2")) is None
    assert store.status(("S1", "img2"), "fp") == "current"
    assert log.merge()["image_id"].tolist() == ["img1", "img3"]
    assert log.merge(images=[("S1", "img3")])["image_id"].tolist() == ["img3"]
    assert log.clear(("S1", "img3"))
    assert not log.clear(("S1", "img3"))


# -- the resume contract of issue 8, with a minimal runner loop -----------------------------------


def _run(root, inputs, params):
    """Compute every image that is not current; return the images computed."""
    store, cache = ImageStore(root), HashCache.in_folder(root)
    computed = []
    for key, path in inputs.items():
        fp = fingerprint(params, cache.hash_inputs({"cells": path}))
        if store.status(key, fp) != "current":
            values = np.frombuffer(path.read_bytes(), np.uint8).astype(float) * params["scale"]
            store.write_result(key, fp, {"values": pd.DataFrame({"v": values})}, seed=image_seed(0, *key))
            computed.append(key)
    cache.save()
    return computed


def test_rerun_recomputes_only_what_changed(tmp_path):
    inputs = {}
    for k in range(3):
        p = tmp_path / "in" / f"cells{k}.csv"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(bytes([k, 1, 2]))
        os.utime(p, ns=(OLD_NS, OLD_NS))
        inputs[("S1", f"img{k}")] = p
    root, params = tmp_path / "out", {"scale": 2.0}
    assert len(_run(root, inputs, params)) == 3
    assert _run(root, inputs, params) == []  # a rerun recomputes nothing
    assert len(_run(root, inputs, {"scale": 3.0})) == 3  # one parameter: everything
    shutil.rmtree(ImageStore(root).folder(("S1", "img1")))
    assert _run(root, inputs, {"scale": 3.0}) == [("S1", "img1")]  # one deleted output: that image
    inputs[("S1", "img2")].write_bytes(bytes([9, 9, 9, 9]))  # one changed input: that image
    assert _run(root, inputs, {"scale": 3.0}) == [("S1", "img2")]
    res = ImageStore(root).read_result(("S1", "img2"))
    assert res.tables["values"]["v"].tolist() == [27.0] * 4
