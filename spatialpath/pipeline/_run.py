"""``spatialpath.pipeline.run``: plan a cohort run, send image tasks to dask, collect, write outputs.

Orchestration only (``docs/pipeline.md``): the per-image work is in ``_tasks``, the client in
``_cluster``, files in ``_store``. The scheduler side fingerprints every image, cleans debris of
killed writers, skips every current image, submits the others, records a task lost with its worker
(``KilledWorker``) in the exclusion log, fits the cohort CN model when configured, merges the
exclusion log and writes the cohort outputs.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from spatialpath.keys import Key
from spatialpath.pipeline._config import PipelineConfig
from spatialpath.pipeline._store import MARKER, DoneMarker, ImageKey, ImageStore, check_ids
from spatialpath.pipeline._tasks import fit_cn, predict_image, process_image, stage_fingerprint, status_record

__all__ = ["PipelineError", "RunResult", "run"]

log = logging.getLogger("spatialpath.pipeline")
CN_MODEL = "cn_model.json"


class PipelineError(RuntimeError):
    """A run stopped by ``fail_fast``: the message names the failed image and its error."""


@dataclass
class RunResult:
    """What :func:`run` returns.

    ``images``: one row per image of the sheet (``sample_id``, ``image_id``, ``status``
    computed/skipped/failed, ``seconds`` of work on the worker, ``error``, ``fingerprint``);
    ``exclusions``: the merged exclusion log (``exclusions.csv``); ``outputs``: the cohort files
    by name; ``timings``: wall seconds of each phase (``plan_s`` hashing inputs and checking the
    store, ``cluster_s`` starting or connecting to the cluster, ``images_s`` the per-image tasks,
    ``cohort_cn_s`` the cohort CN fit and predictions, ``outputs_s`` the cohort tables, figures
    and manifest).

    Examples
    --------
    >>> images = pd.DataFrame({"image_id": ["a", "b"], "status": ["computed", "skipped"]})
    >>> RunResult(Path("out"), images, pd.DataFrame()).counts
    {'computed': 1, 'skipped': 1, 'failed': 0}
    """

    output: Path
    images: pd.DataFrame
    exclusions: pd.DataFrame
    outputs: dict[str, Path] = field(default_factory=dict)
    dashboard_link: str | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Images per status, e.g. ``{"computed": 3, "skipped": 137, "failed": 0}``."""
        vc = self.images["status"].value_counts()
        return {s: int(vc.get(s, 0)) for s in ("computed", "skipped", "failed")}

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"RunResult({len(self.images)} images: {c['computed']} computed, {c['skipped']} skipped, "
            f"{c['failed']} failed in {self.seconds:.1f} s; output {self.output})"
        )

    def _repr_html_(self) -> str:
        failed = self.images[self.images["status"] == "failed"]
        rows = (
            failed[["sample_id", "image_id", "error"]].to_html(index=False) if len(failed) else "<p>none</p>"
        )
        return f"<p><b>{html.escape(repr(self))}</b></p><p>Failed images:</p>{rows}"


def _model_fingerprint(kwargs: dict, seed: int, fitted: list[tuple[str, str, str]]) -> str:
    text = json.dumps({"cn": kwargs, "seed": seed, "images": sorted(fitted)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _marker_extra(store: ImageStore, key: ImageKey) -> dict:
    try:
        return DoneMarker.model_validate_json((store.folder(key) / MARKER).read_bytes()).extra
    except (OSError, ValueError):
        return {}


class _Collector:
    """Gathers task records with a live progress bar; records tasks lost with their worker."""

    def __init__(self, store: ImageStore, plan: dict, records: dict, fail_fast: bool, progress: bool) -> None:
        self.store, self.plan, self.records = store, plan, records
        self.fail_fast, self.progress = fail_fast, progress

    def gather(self, client: Any, futures: dict, what: str) -> None:
        from distributed import as_completed
        from tqdm.auto import tqdm

        n_skip = len(self.records) - len(futures)
        bar = tqdm(total=len(futures), desc=what, unit="image", disable=not self.progress)
        done = failed = 0
        try:
            for fut in as_completed(list(futures)):
                key = futures[fut]
                try:
                    rec = fut.result()
                except Exception as err:
                    fp, seed = self.plan[key]["fp"], self.plan[key]["seed"]
                    text = "".join(traceback.format_exception(err))
                    self.store.exclusions.record(key, err, fp, seed=seed, traceback_text=text)
                    rec = status_record(key, "failed", 0.0, err)
                old = self.records.get(key)
                if old is not None and old["status"] == "computed" and rec["status"] == "computed":
                    rec["seconds"] += old["seconds"]
                self.records[key] = rec
                failed += rec["status"] == "failed"
                done += rec["status"] != "failed"
                bar.update()
                bar.set_postfix(
                    done=done, failed=failed, skipped=n_skip, remaining=len(futures) - done - failed
                )
                if rec["status"] == "failed" and self.fail_fast:
                    client.cancel(list(futures))
                    raise PipelineError(f"image {tuple(key)} failed ({what}): {rec['error']}")
        finally:
            bar.close()


def _plan(config: PipelineConfig, store: ImageStore) -> dict[ImageKey, dict]:
    from spatialpath.pipeline._hashing import HashCache, fingerprint, package_versions
    from spatialpath.pipeline._inputs import input_files
    from spatialpath.pipeline._seeds import image_seed

    sheet = config.sample_sheet
    ids = zip(sheet[Key.obs.sample_id].astype(str), sheet[Key.obs.image_id].astype(str), strict=True)
    keys = check_ids(list(ids))
    cache, params, versions = (
        HashCache.in_folder(config.output),
        config.parameters_for_hash(),
        package_versions(),
    )
    plan = {}
    for key, (_, row) in zip(keys, sheet.iterrows(), strict=True):
        fp = fingerprint(params, cache.hash_inputs(input_files(row)), versions)
        plan[key] = {
            "row": row,
            "fp": fp,
            "seed": image_seed(config.seed, *key),
            "status": store.status(key, fp),
        }
    cache.save()
    return plan


def _cohort_cn(
    client: Any, config: PipelineConfig, store: ImageStore, plan: dict, collect: _Collector
) -> None:
    """Fit (or reuse) the cohort CN model; predict every image whose result lacks this model."""
    from spatialpath.provenance import atomic_write

    ok = [k for k, p in plan.items() if collect.records[k]["status"] != "failed"]
    if not ok:
        return
    kwargs = config.statistics.cellular_neighborhoods.kwargs()
    model_fp = _model_fingerprint(kwargs, config.seed, [(*k, plan[k]["fp"]) for k in ok])
    path = config.output / CN_MODEL
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if saved.get("fingerprint") == model_fp:
        model = saved["model"]
    else:
        fit = client.submit(
            fit_cn,
            str(config.output),
            [(*k, plan[k]["seed"]) for k in ok],
            kwargs,
            config.seed,
            key=f"spatialpath-cn-fit-{uuid.uuid4().hex[:8]}",
            pure=False,
        )
        try:
            model = fit.result()
        except Exception as err:
            text = "".join(traceback.format_exception(err))
            for k in ok:
                store.exclusions.record(k, err, plan[k]["fp"], seed=plan[k]["seed"], traceback_text=text)
                collect.records[k] = status_record(k, "failed", 0.0, err)
            if collect.fail_fast:
                raise PipelineError(f"the cohort cellular-neighbourhood fit failed: {err}") from err
            return
        with atomic_write(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps({"fingerprint": model_fp, "model": model}) + "\n", encoding="utf-8")
    todo = [
        k
        for k in ok
        if not (
            store.status(k, plan[k]["fp"]) == "current"
            and _marker_extra(store, k).get("cn_model") == model_fp
        )
    ]
    futures = {
        client.submit(
            predict_image,
            str(config.output),
            k,
            plan[k]["fp"],
            plan[k]["seed"],
            model,
            model_fp,
            key=f"spatialpath-cn-{k.sample_id}-{k.image_id}-{uuid.uuid4().hex[:8]}",
            pure=False,
        ): k
        for k in todo
    }
    collect.gather(client, futures, "cellular neighbourhoods")


def run(
    config: PipelineConfig | str | Path,
    *,
    client: Any = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    fail_fast: bool = False,
    unblind: bool = False,
    progress: bool = True,
) -> RunResult:
    """Run the cohort pipeline of a config on dask.distributed; skip every image already current.

    Parameters
    ----------
    config
        A :class:`PipelineConfig` (from :func:`~spatialpath.pipeline.load_config`) or a YAML path.
    client
        An existing :class:`distributed.Client` (used as it is, never closed).
    scheduler
        A scheduler address (``tcp://host:8786``) to connect to instead.
    n_workers
        Workers of the LocalCluster started when neither ``client`` nor ``scheduler`` is given
        (default ``cluster.n_workers``, else sized to the machine, see ``docs/pipeline.md``).
    fail_fast
        Stop at the first failed image: cancel the rest and raise :class:`PipelineError`.
    unblind
        Write the blinded metadata columns too (passed to the cohort outputs).
    progress
        Show a progress bar (images done/failed/skipped/remaining) and log the dashboard link.

    Returns
    -------
    RunResult
        Per-image status table, merged exclusion log, cohort output paths.

    Raises
    ------
    PipelineError
        With ``fail_fast``, naming the first failed image and its error.

    Examples
    --------
    Not run here (it starts a dask LocalCluster, too slow for a doctest); the demo cohort is two
    simulated images of 300 cells:

    >>> import tempfile
    >>> from spatialpath.pipeline import prepare_demo_cohort
    >>> config = prepare_demo_cohort(tempfile.mkdtemp(), n_patients=2, n_cells=300, n_perms=5, progress=False)
    >>> run(config, n_workers=1, progress=False).counts  # doctest: +SKIP
    {'computed': 2, 'skipped': 0, 'failed': 0}
    >>> run(config, n_workers=1, progress=False).counts  # again: every image is current  # doctest: +SKIP
    {'computed': 0, 'skipped': 2, 'failed': 0}
    """
    from spatialpath.pipeline._cluster import acquire_client

    if not isinstance(config, PipelineConfig):
        from spatialpath.pipeline._validate import load_config

        config = load_config(config)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    tic = started
    store = ImageStore(config.output)
    config.output.mkdir(parents=True, exist_ok=True)
    store.clean_temp()  # before any worker writes: every temporary file now is debris
    plan = _plan(config, store)
    cohort_cn = config.statistics.cellular_neighborhoods is not None
    records = {k: status_record(k, "skipped", 0.0) for k in plan}
    todo = [
        k
        for k, p in plan.items()
        if p["status"] != "current"
        and not (cohort_cn and store.status(k, stage_fingerprint(p["fp"])) == "current")
    ]
    collect = _Collector(store, plan, records, fail_fast, progress)
    timings["plan_s"], tic = time.perf_counter() - tic, time.perf_counter()
    with acquire_client(config.cluster, client=client, scheduler=scheduler, n_workers=n_workers) as cl:
        timings["cluster_s"], tic = time.perf_counter() - tic, time.perf_counter()
        link = getattr(cl, "dashboard_link", None)
        if progress:
            print(f"spatialpath run: {len(todo)} of {len(plan)} images to compute; dashboard: {link}")
        log.info("dashboard: %s", link)
        try:
            token = uuid.uuid4().hex[:8]  # task keys unique per run: never an earlier run's erred task
            shared = cl.scatter(config, broadcast=True) if todo else None
            futures = {
                cl.submit(
                    process_image,
                    shared,
                    plan[k]["row"],
                    plan[k]["fp"],
                    plan[k]["seed"],
                    cohort_cn=cohort_cn,
                    key=f"spatialpath-image-{k.sample_id}-{k.image_id}-{token}",
                    pure=False,
                ): k
                for k in todo
            }
            collect.gather(cl, futures, "images")
            timings["images_s"], tic = time.perf_counter() - tic, time.perf_counter()
            if cohort_cn:
                _cohort_cn(cl, config, store, plan, collect)
                timings["cohort_cn_s"] = time.perf_counter() - tic
        finally:
            exclusions = store.exclusions.merge(list(plan))
    tic = time.perf_counter()
    columns = ["sample_id", "image_id", "status", "seconds", "error", "fingerprint"]
    images = pd.DataFrame([{**records[k], "fingerprint": plan[k]["fp"]} for k in plan], columns=columns)
    outputs = _cohort_outputs(config, store, list(plan), images, unblind)
    timings["outputs_s"] = time.perf_counter() - tic
    seconds = time.perf_counter() - started
    return RunResult(config.output, images, exclusions, outputs, link, seconds, timings)


def _cohort_outputs(config, store, images, statuses, unblind) -> dict[str, Path]:
    from spatialpath.pipeline._outputs import write_cohort_outputs

    return write_cohort_outputs(config, store, images, statuses, store.exclusions, unblind=unblind)
