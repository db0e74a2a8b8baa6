"""Edge-corrected univariate and cross-type K, L, G, J and pair-correlation functions, per image.

Definitions follow spatstat (Baddeley, Rubak & Turner 2015); see ``docs/point-patterns.md``.
For type ``a`` (focal) and ``b``, with ``n_a``, ``n_b`` cells in the window ``W`` and ``b_i`` the
distance of cell ``i`` to the boundary of ``W``:

- ``K_ab(r) = |W| / (n_a n_b) Σ_{i∈a} Σ_{j∈b, j≠i} e_ij 1{d_ij ≤ r}`` (``n_a (n_a − 1)`` when
  ``a = b``), with the translation weight ``e_ij = |W| / |W ∩ (W + x_j − x_i)|``; the border
  correction keeps focal cells with ``b_i ≥ r``: ``Σ_{i∈a: b_i ≥ r} Σ_j 1{d_ij ≤ r} /
  (λ_b #{i ∈ a: b_i ≥ r})``. ``L = √(K/π)``.
- ``g_ab(r)``: the same sums smoothed by an Epanechnikov kernel of half-width ``h = 0.15/√λ_b``
  (Stoyan), divided by ``2πr``.
- ``G_ab(r)``: the fraction of ``a`` cells with a ``b`` cell within ``r`` (border: among those with
  ``b_i ≥ r``; Hanisch: each distance weighted by ``|W| / |W ⊖ d_i|``).
- ``J_ab = (1 − G_ab) / (1 − F_b)``, ``F_b`` the empty-space function of ``b`` on a grid of test
  locations (border-corrected).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from anndata import AnnData

from spatialpath.gr import _envelope
from spatialpath.gr import _pp_kernels as kern
from spatialpath.gr._cross_prepare import check_r, csr_samples, default_r_max, kernel_args, support
from spatialpath.gr._cross_result import CrossFunctionResult
from spatialpath.gr._permutation import permutation_test
from spatialpath.gr._utils import (
    Groups,
    check_coordinates,
    default_library_key,
    image_groups,
    image_seed,
    label_codes,
)
from spatialpath.gr._utils import image_seed as _image_seed  # noqa: F401  (the former private name)
from spatialpath.gr._window import Window, WindowLike, make_window
from spatialpath.keys import Key
from spatialpath.model import DataModelError

__all__ = ["CORRECTIONS", "KINDS", "cross_function"]

Kind = Literal["K", "L", "G", "J", "g"]
KINDS = ("K", "L", "G", "J", "g")
#: edge corrections per function; ``translation`` for G/J means Hanisch's (see the docs).
CORRECTIONS = {
    "K": ("translation", "border", "none"),
    "L": ("translation", "border", "none"),
    "g": ("translation", "border", "none"),
    "G": ("border", "hanisch", "translation", "none"),
    "J": ("border", "hanisch", "translation", "none"),
}
_MODE = {"none": kern.NONE, "translation": kern.TRANSLATION, "border": kern.BORDER, "hanisch": kern.HANISCH}
_STAT = {"K": kern.STAT_K, "L": kern.STAT_K, "g": kern.STAT_G_PCF, "G": kern.STAT_G, "J": kern.STAT_J}
#: default distances: ``DEFAULT_N_R`` values from 0 to the default r_max.
DEFAULT_N_R = 51


def _types(value: str | Sequence[str] | None, cats: list[str], name: str) -> list[str]:
    if value is None:
        return list(cats)
    values = [value] if isinstance(value, str) else [str(v) for v in value]
    missing = [v for v in values if v not in cats]
    if missing or not values:
        raise DataModelError(
            f"{name}={value!r}: unknown cell type(s) {missing}; the categories are {cats[:20]}"
        )
    return values


def _window_for(
    window: WindowLike | Mapping, image: str, n_images: int, xy: np.ndarray, res: float | None
) -> Window:
    if isinstance(window, Mapping):
        if image not in window:
            raise DataModelError(f"window has no entry for image {image!r}; keys: {list(window)[:5]}")
        return make_window(window[image], xy, resolution_um=res)
    if window is not None and n_images > 1:
        raise DataModelError(
            f"one window was given for {n_images} images; pass a mapping {{image_id: window}} "
            "(or window=None for each image's convex hull)"
        )
    return make_window(window, xy, resolution_um=res)


def cross_function(
    adata: AnnData,
    cluster_key: str,
    kind: Kind = "L",
    a: str | Sequence[str] | None = None,
    b: str | Sequence[str] | None = None,
    *,
    r: np.ndarray | Sequence[float] | None = None,
    r_max: float | None = None,
    correction: str | None = None,
    window: WindowLike | Mapping[str, WindowLike] = None,
    window_resolution_um: float | None = None,
    library_key: str | None = None,
    null: Literal["random_labelling", "csr"] | None = "random_labelling",
    n_perms: int | None = None,
    alpha: float = 0.05,
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
    seed: int = 0,
    copy: bool = False,
    progress: bool = True,
) -> CrossFunctionResult | None:
    """Edge-corrected K, L, G, J or pair-correlation function of cell types ``a → b``, per image.

    Parameters
    ----------
    adata
        Cells with ``obsm["spatial"]`` in µm.
    cluster_key
        Categorical ``obs`` column of cell types.
    kind
        ``"K"``, ``"L"`` (``√(K/π)``), ``"G"`` (nearest-neighbour distance distribution), ``"J"`` or
        ``"g"`` (pair correlation).
    a, b
        Focal and target type(s); every combination of ``a × b`` is computed, ``a = b`` being the
        univariate function. ``None`` means every type.
    r, r_max
        Distances (µm, increasing); default ``DEFAULT_N_R`` values from 0 to ``r_max``, whose
        default is spatstat's rule (a quarter of the window's shorter side, at most
        ``√(1000/(πλ))``), common to all images. r beyond the window's support is refused.
    correction
        ``"translation"`` (default for K, L, g: the set covariogram of the window), ``"border"``
        (default for G, J: reduced sample), ``"hanisch"`` (G, J; ``"translation"`` is accepted for
        G/J and means this one) or ``"none"``.
    window
        The observation window: a tissue polygon (shapely or GeoDataFrame, µm), a mask
        (``xarray.DataArray`` with µm coordinates), a :class:`~spatialpath.gr.Window`, or a mapping
        ``{image_id: window}`` for several images; ``None``: each image's convex hull. Cells
        outside the window are left out (counted in ``summary()["n_outside_window"]``).
    window_resolution_um
        Raster resolution of polygon windows (default: about 4 million pixels).
    library_key
        Image column (default ``obs["image_id"]`` when present).
    null
        ``"random_labelling"``: labels permuted among the cells' locations within each image (the
        null for cross-type questions; the permutation engine). ``"csr"``: every type placed
        uniformly at random in the window, with the same counts. ``None``: no test.
    n_perms
        Permutations/simulations; default :data:`spatialpath.gr._envelope.RECOMMENDED_N_SIMULATIONS`,
        enough for a valid global envelope test at ``alpha = 0.05``. Fewer (e.g. 199) give valid
        pointwise envelopes faster (see ``docs/point-patterns.md``).
    alpha, alternative
        Level of the envelopes and sidedness of the tests (``"greater"``: more clustered /
        attracted than the null, for K, L, G, g; for J clustering is J < 1).
    seed
        Seed of the null; each image's stream derives from ``(seed, image_id)``.
    copy
        Return the result instead of writing ``adata.uns[f"{cluster_key}_cross_{kind}"]``
        (``params``, ``r``, ``summary`` and ``curves`` tables); for L and G of one image the
        univariate curves also go to squidpy's ``uns[f"{cluster_key}_ripley_{kind}"]``, so
        ``squidpy.pl.ripley`` plots them.
    progress
        Progress bars.

    Returns
    -------
    :class:`CrossFunctionResult` with ``copy=True``, else ``None``.

    Examples
    --------
    >>> from spatialpath.datasets import simulate_tissue
    >>> import shapely
    >>> t = simulate_tissue(seed=0, n_cells=2000)
    >>> tissue = shapely.from_wkt(t.adata.uns["simulation"]["regions_wkt"]["tissue"])
    >>> res = cross_function(t.adata, "cell_type", "L", "CD8 T", "Tumour", r_max=100, window=tissue,
    ...                      n_perms=99, copy=True, progress=False)
    >>> res.observed.shape, bool(res.global_p[0, 0] <= 1)
    ((1, 1, 51), True)
    """
    if kind not in KINDS:
        raise DataModelError(f"kind must be one of {KINDS}, got {kind!r}")
    corr = correction or ("translation" if kind in ("K", "L", "g") else "border")
    if corr not in CORRECTIONS[kind]:
        raise DataModelError(
            f"correction {corr!r} is not available for {kind}; choose one of {CORRECTIONS[kind]}"
        )
    if kind in ("G", "J") and corr == "translation":
        corr = "hanisch"
    if null not in ("random_labelling", "csr", None):
        raise DataModelError(f"null must be 'random_labelling', 'csr' or None, got {null!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise DataModelError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    if not 0 < alpha < 1:
        raise DataModelError(f"alpha must be in (0, 1), got {alpha}")
    n_perms = _envelope.RECOMMENDED_N_SIMULATIONS if n_perms is None else n_perms
    if null is not None and (not isinstance(n_perms, int | np.integer) or n_perms < 1):
        raise DataModelError(f"n_perms must be a positive integer, got {n_perms!r}")
    if null is not None:
        need = int(np.ceil((2 if alternative == "two-sided" else 1) / alpha)) - 1
        if n_perms < need:
            raise DataModelError(
                f"n_perms={n_perms} is too few for {alternative} envelopes at alpha={alpha}: at least {need} "
                f"are needed (valid pointwise envelopes: {_envelope.FAST_N_SIMULATIONS}; a global test "
                f"with good power: {_envelope.RECOMMENDED_N_SIMULATIONS})"
            )
    xy_all = check_coordinates(adata)
    codes_all, cats = label_codes(adata, cluster_key, min_types=1)
    a_list, b_list = _types(a, cats, "a"), _types(b, cats, "b")
    pairs = [(x, y) for x in a_list for y in b_list]
    pair_idx = np.array([cats.index(x) * len(cats) + cats.index(y) for x, y in pairs])
    library_key = default_library_key(adata, library_key)
    groups: Groups = image_groups(adata, library_key)
    r_arr = check_r(r)
    if r_arr is not None and r_max is not None:
        raise DataModelError("pass r or r_max, not both")
    if r_max is not None and not (np.isfinite(r_max) and r_max > 0):
        raise DataModelError(f"r_max must be a positive distance in µm, got {r_max}")

    # windows and cells in them, image by image
    prepared = []
    for g, image in enumerate(groups.names):
        rows = groups.order[groups.offsets[g] : groups.offsets[g + 1]]
        # a canonical order (by x, then y): the null of an image never depends on the AnnData's row order
        rows = rows[np.lexsort((xy_all[rows, 1], xy_all[rows, 0]))]
        win = _window_for(window, image, groups.n, xy_all[rows], window_resolution_um)
        inside = win.contains(xy_all[rows])
        if not inside.any():
            raise DataModelError(
                f"the window of image {image!r} contains none of its {len(rows)} cells: check that the "
                "window and obsm['spatial'] are in the same µm frame"
            )
        prepared.append((image, rows[inside], win, int((~inside).sum())))
    if r_arr is None:
        rm = r_max
        if rm is None:  # the default never exceeds what the correction supports
            rm = min(default_r_max(w, len(rw)) for _, rw, w, _ in prepared)
            rm = min([rm] + [0.99 * support(w, corr, rm) for _, _, w, _ in prepared])
        r_arr = np.linspace(0.0, rm, DEFAULT_N_R)
    n_types, m = len(cats), len(r_arr)
    stat, mode = _STAT[kind], _MODE[corr]
    reach = float(r_arr[-1])
    if kind == "g":
        n_min = min(max(np.bincount(codes_all[rw], minlength=n_types).min(), 1) for _, rw, _, _ in prepared)
        reach += 0.15 / np.sqrt(n_min / max(w.area_um2 for _, _, w, _ in prepared))
    for image, _, win, _ in prepared:
        largest = support(win, corr, float(r_arr[-1]))
        if r_arr[-1] > largest:
            raise DataModelError(
                f"r up to {r_arr[-1]:.4g} µm exceeds the support of image {image!r}'s window with {corr} "
                f"correction; the largest valid r is {largest:.4g} µm (pass r_max ≤ that)"
            )

    shape = (groups.n, len(pairs), m)
    obs_c, theo = np.full(shape, np.nan), np.full(shape, np.nan)
    fields = {k: np.full(shape, np.nan) for k in ("mean", "plo", "phi", "pp", "glo", "ghi")}
    gp = np.full(shape[:2], np.nan)
    n_a, n_b = np.zeros(shape[:2]), np.zeros(shape[:2])
    for g, (image, rows, win, _) in enumerate(prepared):
        codes = codes_all[rows].astype(np.int64)
        args = kernel_args(xy_all[rows], codes, win, r_arr, stat, mode, n_types, reach, kind == "J")
        n_per = np.bincount(codes, minlength=n_types)
        n_a[g] = [n_per[cats.index(x)] for x, _ in pairs]
        n_b[g] = [n_per[cats.index(y)] for _, y in pairs]
        seed_g = image_seed(seed, image)
        desc = f"{kind} {image}"
        if null == "random_labelling":
            one = Groups(
                [image], np.zeros(len(codes), np.int32), np.arange(len(codes)), np.array([0, len(codes)])
            )
            res = permutation_test(
                kern.evaluate,
                codes,
                one,
                args,
                n_types * n_types * m,
                n_perms=int(n_perms),
                seed=seed_g,
                progress=progress,
                desc=desc,
                keep=True,
            )
            observed, sims = res.observed, res.samples
        else:
            observed = kern.evaluate_parallel(codes, args)
            sims = None
            if null == "csr":
                sims = csr_samples(
                    codes,
                    win,
                    r_arr,
                    stat,
                    mode,
                    n_types,
                    reach,
                    kind == "J",
                    int(n_perms),
                    seed_g,
                    progress,
                    desc,
                )
        obs = observed.reshape(n_types * n_types, m)[pair_idx]
        lam_b = n_b[g] / win.area_um2
        if kind == "L":
            obs = np.sqrt(obs / np.pi)
        obs_c[g] = obs
        theo[g] = {
            "K": np.broadcast_to(np.pi * r_arr**2, (len(pairs), m)),
            "L": np.broadcast_to(r_arr, (len(pairs), m)),
            "G": 1.0 - np.exp(-lam_b[:, None] * np.pi * r_arr[None, :] ** 2),
        }.get(kind, np.ones((len(pairs), m)))
        if sims is not None:
            sim = sims.reshape(len(sims), n_types * n_types, m)[:, pair_idx]
            if kind == "L":
                sim = np.sqrt(sim / np.pi)
            pw = _envelope.pointwise_envelope(obs, sim, alpha=alpha, alternative=alternative)
            ge = _envelope.global_envelope_test(obs, sim, alpha=alpha, alternative=alternative)
            with np.errstate(invalid="ignore"):
                fields["mean"][g] = np.nanmean(sim, axis=0) if len(sim) else np.nan
            fields["plo"][g], fields["phi"][g], fields["pp"][g] = pw.lo, pw.hi, pw.pvalue
            fields["glo"][g], fields["ghi"][g], gp[g] = ge.lo, ge.hi, ge.pvalue
    auc = _envelope.auc(r_arr, obs_c, theo)
    params = {
        "cluster_key": cluster_key,
        "library_key": library_key,
        "kind": kind,
        "correction": corr,
        "null": null,
        "n_perms": int(n_perms) if null else None,
        "alpha": alpha,
        "alternative": alternative,
        "seed": seed,
        "r_max_um": float(r_arr[-1]),
    }
    tested = null is not None
    result = CrossFunctionResult(
        kind=kind,
        correction=corr,
        null=null,
        r=r_arr,
        images=list(groups.names),
        pairs=pairs,
        observed=obs_c,
        theoretical=theo,
        auc=auc,
        n_a=n_a,
        n_b=n_b,
        area_um2=np.array([w.area_um2 for _, _, w, _ in prepared]),
        n_outside=np.array([k for _, _, _, k in prepared]),
        window_source=[w.source for _, _, w, _ in prepared],
        params=params,
        null_mean=fields["mean"] if tested else None,
        pointwise_lo=fields["plo"] if tested else None,
        pointwise_hi=fields["phi"] if tested else None,
        pointwise_p=fields["pp"] if tested else None,
        global_lo=fields["glo"] if tested else None,
        global_hi=fields["ghi"] if tested else None,
        global_p=gp if tested else None,
    )
    if copy:
        return result
    adata.uns[Key.uns.cross_function(cluster_key, kind)] = result.to_uns()
    if kind in ("L", "G"):  # squidpy.pl.ripley(adata, cluster_key, mode=kind) draws our curves
        ripley = result.to_squidpy_ripley(cluster_key, cats)
        if ripley is not None:
            adata.uns[Key.uns.ripley(cluster_key, kind)] = ripley
    return None
