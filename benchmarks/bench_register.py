"""Benchmark: ``register_images`` (affine) on a 10k × 10k pair (issue 7 budget: ≤ 30 s, ≤ 4 GiB).

Fixed: the simulator's DAPI channel (0.5 µm/px) cropped/padded to 10,000 × 10,000 px; moving: the fixed image
under a known similarity (rotation 20°, scale 1.04, shift), resampled with scipy.ndimage. Both are wrapped as
dask arrays (2048-px chunks) so the registration reads them lazily. Setup (simulation, warping) is not timed.
The TRE (px) on a 20 × 20 grid of the overlap is printed next to the time.

Run: ``.venv/bin/python benchmarks/bench_register.py``
"""

from __future__ import annotations

import json

from _harness import print_timed_table, timed

SETUP = """
import json, warnings
import numpy as np, dask.array as da
from scipy import ndimage
from spatialpath.datasets import simulate_tissue
from spatialpath.model import make_image
from spatialpath.align._register import register_images
from spatialpath.align._transform import Transform

warnings.filterwarnings("ignore")
N, PS = 10_000, 0.5
sim = simulate_tissue(seed=11, n_cells=90_000)
dapi = sim.image.sel(c="DAPI").data[:N, :N].compute()
img = np.zeros((N, N), np.float32)
img[: dapi.shape[0], : dapi.shape[1]] = dapi
del sim, dapi
c = np.array([(N - 1) / 2, (N - 1) / 2]) * PS
lin = Transform.from_params(rotation_deg=20.0, scale=1.04)
t = c + np.array([37.3, -21.9]) - lin.apply_points([c])[0]
truth = Transform.from_params(
    rotation_deg=20.0, scale=1.04, translation=tuple(t), source="moving", target="fixed"
)
g = np.diag([PS, PS, 1.0])
pull = np.linalg.inv(g) @ truth.matrix @ g
sw = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1.0]])
a = sw @ pull @ sw
moving_np = ndimage.affine_transform(img, a[:2, :2], a[:2, 2], order=1).astype(np.float32)
fixed = make_image(da.from_array(img[None], chunks=(1, 2048, 2048)), channels=["DAPI"], pixel_size_um=PS)
mov = da.from_array(moving_np[None], chunks=(1, 2048, 2048))
moving = make_image(mov, channels=["DAPI"], pixel_size_um=PS)
try:  # warm-up (imports, caches) on a central crop
    register_images(fixed[:, 4500:5500, 4500:5500], moving[:, 4500:5500, 4500:5500], progress=False)
except Exception:
    pass
"""

RUN = """
res = register_images(fixed, moving, progress=False)
"""

REPORT = """
ys, xs = np.mgrid[0:N:N / 20, 0:N:N / 20]
xf = np.column_stack([xs.ravel(), ys.ravel()]) * PS
xm = truth.inverse().apply_points(xf) / PS
ok = (xm >= 0).all(axis=1) & (xm <= N - 1).all(axis=1)
err = np.linalg.norm(res.transform.apply_points(xm[ok] * PS) - xf[ok], axis=1) / PS
open("/tmp/bench_register_tre.json", "w").write(json.dumps(
    {"median_px": float(np.median(err)), "p90_px": float(np.percentile(err, 90)),
     "similarity": res.similarity_after, "timings": res.timings}))
"""


def main() -> None:
    r = timed(SETUP, RUN + REPORT)
    print_timed_table([("register_images affine, 10k × 10k dask pair", r, "≤ 30 s, ≤ 4 GiB")])
    with open("/tmp/bench_register_tre.json") as f:
        print("TRE and QC:", json.dumps(json.load(f)))


if __name__ == "__main__":
    main()
