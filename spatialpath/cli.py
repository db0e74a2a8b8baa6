"""Command-line interface: ``spatialpath run CONFIG.yaml``, ``spatialpath demo``, ``--version``."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from spatialpath._version import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spatialpath",
        description="Spatial pathology: micrometre data model, TME statistics, biomarker tables.",
    )
    parser.add_argument("--version", action="version", version=f"spatialpath {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run the cohort pipeline end to end on the embedded simulated cohort (or analyse --input)",
        description="Write a simulated cohort (two arms, a planted CD8 T difference) with its run.yaml "
        "and run the cohort pipeline on it, as 'spatialpath run' does (docs/pipeline.md). With --input, "
        "analyse one file of yours instead (counts, enrichment, biomarker tables).",
    )
    demo.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    demo.add_argument(
        "--input",
        default=None,
        help="analyse your data instead of the simulated cohort: an .h5ad in the data model, or a "
        "cell table (MCMICRO, steinbock, inForm, plain x/y CSV)",
    )
    demo.add_argument("--schema", default="auto", help="cell-table schema (default: auto-detect)")
    demo.add_argument("--pixel-size-um", type=float, default=None, help="µm per pixel, for tables in pixels")
    demo.add_argument("--units", choices=("um", "px"), default=None, help="units of a plain table's x/y")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated cohort (default 0)")
    demo.add_argument("--n-patients", type=int, default=8, help="patients in the simulated cohort")
    demo.add_argument("--n-cells", type=int, default=3000, help="cells per simulated image")
    demo.add_argument("--n-perms", type=int, default=200, help="enrichment permutations (cohort demo)")
    demo.add_argument("--workers", type=int, default=None, help="local dask workers (cohort demo)")
    demo.add_argument("--unblind", action="store_true", help="show the arms (blinded by default)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run")
    run = sub.add_parser(
        "run",
        help="run the cohort pipeline of a YAML config on dask.distributed (resumable)",
        description="Run the cohort pipeline of CONFIG.yaml (docs/pipeline.md). A rerun skips every "
        "image whose inputs, parameters and package versions are unchanged.",
    )
    run.add_argument("config", help="the pipeline's YAML config (docs/pipeline-config.md)")
    run.add_argument(
        "--scheduler", default=None, help="address of a running dask scheduler (tcp://host:8786)"
    )
    run.add_argument(
        "--workers", type=int, default=None, help="workers of the local cluster (default: all cores)"
    )
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed image")
    run.add_argument("--unblind", action="store_true", help="write the blinded metadata columns too")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _run(args: argparse.Namespace) -> int:
    from spatialpath.pipeline._run import PipelineError, run
    from spatialpath.pipeline._validate import ConfigError

    if args.workers is not None and args.workers < 1:
        print(f"spatialpath run: error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        result = run(
            args.config,
            scheduler=args.scheduler,
            n_workers=args.workers,
            fail_fast=args.fail_fast,
            unblind=args.unblind,
            progress=not args.no_progress,
        )
    except (ConfigError, FileNotFoundError) as e:
        print(f"spatialpath run: error: {e}", file=sys.stderr)
        return 2
    except PipelineError as e:
        print(f"spatialpath run: stopped (--fail-fast): {e}", file=sys.stderr)
        return 1
    print(result)
    failed = result.counts["failed"]
    if failed:
        print(f"{failed} image(s) failed: see {result.output / 'exclusions.csv'}", file=sys.stderr)
    return 1 if failed else 0


def _demo(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    if args.input is None:
        from spatialpath.pipeline._demo_run import run_demo_cohort

        if args.workers is not None and args.workers < 1:
            print(f"spatialpath demo: error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
            return 2
        try:
            demo = run_demo_cohort(
                args.out,
                seed=args.seed,
                n_patients=args.n_patients,
                n_cells=args.n_cells,
                n_perms=args.n_perms,
                n_workers=args.workers,
                unblind=args.unblind,
                overwrite=args.overwrite,
                progress=not args.no_progress,
            )
        except (FileExistsError, ValueError) as e:
            msg = str(e).replace("overwrite=True", "--overwrite")
            print(f"spatialpath demo: error: {msg}", file=sys.stderr)
            return 2
        print(demo.summary)
        return 1 if demo.result.counts["failed"] else 0
    from spatialpath._demo import run_demo

    try:
        result = run_demo(
            args.out,
            input_path=args.input,
            overwrite=args.overwrite,
            command=shlex.join(["spatialpath", *(sys.argv[1:] if argv is None else argv)]),
            table_options={"schema": args.schema, "pixel_size_um": args.pixel_size_um, "units": args.units},
        )
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        # speak the command line's language in the reader's "pass pixel_size_um=..." advice
        msg = str(e).replace("pixel_size_um=", "--pixel-size-um ").replace("units='um'", "--units um")
        print(f"spatialpath demo: error: {msg}", file=sys.stderr)
        return 2
    print(result.summary)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "run":
        return _run(args)
    if args.command == "demo":
        return _demo(args, argv)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
