"""Import hygiene: lazy subpackages, and never napari or Qt on `import spatialpath`."""

from __future__ import annotations

import subprocess
import sys

import pytest

GUI = ("napari", "PyQt5", "PyQt6", "PySide2", "PySide6", "qtpy", "vispy", "magicgui")


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_import_is_lazy_and_gui_free():
    out = _run(
        "import sys, spatialpath as sp\n"
        "print(sorted(m for m in sys.modules if m.startswith('spatialpath.')))\n"
        "sp.datasets, sp.io, sp.pl, sp.export, sp.model, sp.provenance, sp.keys, sp.gr\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({GUI!r})))"
    )
    first, second = out.splitlines()
    assert first == "['spatialpath._version']"
    assert second == "[]"


def test_lazy_attribute_errors_and_dir():
    import spatialpath as sp

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = sp.nope
    assert {"datasets", "io", "pl", "export", "model", "provenance", "keys", "gr"} <= set(dir(sp))
    assert sp.datasets.simulate_tissue.__module__ == "spatialpath.datasets._simulate"
