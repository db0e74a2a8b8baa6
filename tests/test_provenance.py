"""Atomic writes and the manifest."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata

import pandas as pd
import pytest

from spatialpath.io import write_table
from spatialpath.provenance import (
    RESULT_DEPENDENCIES,
    atomic_write,
    check_output_path,
    sha256_file,
    utc_now,
    write_manifest,
)


def test_atomic_write_creates_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.suffix == ".txt"
        tmp.write_text("done")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_text() == "done"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "table.csv"
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_write(target) as tmp:  # noqa: PT012
        tmp.write_text("partial,row\n1,")
        raise RuntimeError("disk on fire")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_file(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(target, overwrite=True) as tmp:  # noqa: PT012
        tmp.write_text("new but incomplete")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_never_overwrites_without_flag(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("precious")
    with pytest.raises(FileExistsError, match="pass overwrite=True"), atomic_write(target) as tmp:
        tmp.write_text("x")
    assert target.read_text() == "precious"
    with atomic_write(target, overwrite=True) as tmp:
        tmp.write_text("replaced")
    assert target.read_text() == "replaced"


def test_writer_that_writes_nothing_is_an_error(tmp_path):
    target = tmp_path / "a.txt"
    with pytest.raises(RuntimeError, match="did not create the temporary file"), atomic_write(target) as tmp:
        tmp.unlink()
    assert not target.exists()


def test_refuses_to_write_inside_input_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cells.csv").write_text("x,y\n")
    for inputs in ([data], [data / "cells.csv"]):
        with (
            pytest.raises(ValueError, match="inside the input folder"),
            atomic_write(data / "out.csv", inputs=inputs),
        ):
            pass
    with pytest.raises(ValueError, match="inside the input folder"):
        check_output_path(data / "cells.csv", [data / "cells.csv"])
    assert check_output_path(tmp_path / "out" / "t.csv", [data]).name == "t.csv"
    assert sorted(p.name for p in data.iterdir()) == ["cells.csv"]


def test_csv_is_byte_identical_and_parquet_value_identical(tmp_path):
    df = pd.DataFrame({"sample_id": ["s1", "s2"], "density": [0.1 + 0.2, 1 / 3], "n": [3, 0]})
    write_table(df, tmp_path / "a.csv")
    write_table(df.copy(), tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    write_table(df, tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), df)
    back = pd.read_csv(tmp_path / "a.csv", float_precision="round_trip")
    assert back["density"].tolist() == df["density"].tolist()  # shortest round-trip floats
    with pytest.raises(ValueError, match=r"unknown table format '.xls'"):
        write_table(df, tmp_path / "a.xls")


def test_manifest_records_hashes_versions_and_times(tmp_path):
    inp = tmp_path / "in" / "cells.csv"
    inp.parent.mkdir()
    inp.write_bytes(b"x,y\n1,2\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "t.csv").write_bytes(b"a\n1\n")
    started = utc_now()
    m = write_manifest(
        out / "manifest.json",
        command="spatialpath demo",
        parameters={"k": 6, "path": out, "radii": (10.0, 20.0)},
        seeds={"seed": 0},
        inputs=[inp],
        outputs=[out / "t.csv"],
        started_at=started,
    )
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["outputs"] == [
        {"path": "t.csv", "size_bytes": 4, "sha256": hashlib.sha256(b"a\n1\n").hexdigest()}
    ]
    assert doc["inputs"][0]["sha256"] == hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    assert doc["inputs"][0]["path"] == str(inp.resolve())
    assert doc["parameters"] == {"k": 6, "path": str(out), "radii": [10.0, 20.0]}
    assert doc["seeds"] == {"seed": 0}
    assert doc["started_at"] == started
    assert doc["finished_at"] >= started
    deps = doc["environment"]["dependencies"]
    for name in ("numpy", "scipy", "pandas", "anndata", "squidpy", "scikit-learn", "numba"):
        assert deps[name] == metadata.version(name)
    assert set(deps) <= set(RESULT_DEPENDENCIES)
    assert m.spatialpath_version == doc["spatialpath_version"]
    with pytest.raises(FileExistsError):
        write_manifest(out / "manifest.json", command="again", started_at=started)


def test_manifest_can_redact_input_paths(tmp_path):
    inp = tmp_path / "in" / "patient_007_slide.csv"
    inp.parent.mkdir()
    inp.write_text("x\n")
    out = tmp_path / "out"
    m = write_manifest(
        out / "manifest.json", command="c", inputs=[inp], started_at=utc_now(), redact_paths=True
    )
    assert m.inputs[0].path == "patient_007_slide.csv"
    assert str(tmp_path) not in (out / "manifest.json").read_text()


def test_sha256_matches_hashlib_on_multi_chunk_file(tmp_path):
    p = tmp_path / "big.bin"
    payload = bytes(range(256)) * 10_000  # > 1 MiB chunk
    p.write_bytes(payload)
    assert sha256_file(p) == hashlib.sha256(payload).hexdigest()


def test_atomic_write_gives_files_the_umask_permissions(tmp_path):
    """mkstemp creates 0600 files; outputs must be readable as any normally created file is."""
    import os
    import stat

    from spatialpath.provenance import atomic_write

    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "out.txt") as tmp:
            tmp.write_text("x")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "out.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644
