"""`diffrepro <step> ...`: one sub-command per pipeline step; Snakemake rules only call these.

Each command lives in its own module exposing `configure(parser)` and `run(args) -> int | None`. Only the chosen
command's module is imported, so a bad invocation fails in well under a second (no torch import).
A `UserError` prints `error: <message>` and exits 2; nothing else is caught.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

# command words -> module. Keep sorted by area; a module may serve one command only.
COMMANDS: dict[str, str] = {
    # spine
    "prepare": "diffrepro.steps.prepare",
    "train": "diffrepro.steps.train",
    "import-model": "diffrepro.steps.import_model",
    "train-classifier": "diffrepro.steps.train_classifier",
    "reference-stats": "diffrepro.steps.reference_stats",
    "export-refstats": "diffrepro.steps.export_refstats",
    "sample": "diffrepro.steps.sample",
    "evaluate": "diffrepro.steps.evaluate",
    "aggregate": "diffrepro.steps.aggregate",
    "report": "diffrepro.steps.report",
    "compare": "diffrepro.steps.compare",
    "validate": "diffrepro.steps.validate_params",
    "assets inception": "diffrepro.steps.assets_inception",
    "assets datasets": "diffrepro.steps.assets_datasets",
    # real data
    "real section": "diffrepro.steps.real_section",
    # natural inference
    "ni matrix": "diffrepro.steps.ni_matrix",
    "ni study": "diffrepro.steps.ni_study",
    "ni fit": "diffrepro.steps.ni_fit",
    # studies
    "study degradation": "diffrepro.steps.study_degradation",
    "study geometry": "diffrepro.steps.study_geometry",
    # multivariate diffusions
    "mdm train": "diffrepro.steps.mdm_train",
    "mdm evaluate": "diffrepro.steps.mdm_evaluate",
    # AMED predictors (GEO §3.3)
    "amed train": "diffrepro.steps.amed_train",
    "amed section": "diffrepro.steps.amed_section",
    # benchmarks (print figures; never asserted by timing tests)
    "bench optimal-denoiser": "diffrepro.bench.optimal_denoiser",
    "bench samplers": "diffrepro.bench.samplers",
    "bench ni": "diffrepro.bench.ni",
    "bench degradation": "diffrepro.bench.degradation",
    "bench mdm": "diffrepro.bench.mdm",
    "bench gpu": "diffrepro.bench.gpu",
    "bench gits": "diffrepro.bench.gits",
    "bench amed": "diffrepro.bench.amed",
    "bench real-fid": "diffrepro.bench.real_fid",
    "bench inception": "diffrepro.bench.inception",
}


def _match(argv: list[str]) -> tuple[str | None, list[str]]:
    for n in (2, 1):
        key = " ".join(argv[:n])
        if len(argv) >= n and key in COMMANDS:
            return key, argv[n:]
    return None, argv


def _usage() -> str:
    lines = ["usage: diffrepro <command> [options]", "", "commands:"]
    lines += [f"  {name}" for name in COMMANDS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a process of its own (a workflow job): reads are traced when DIFFREPRO_READ_TRACE is set
        from .readtrace import install_from_environment

        install_from_environment()
    argv = list(sys.argv[1:] if argv is None else argv)
    name, rest = _match(argv)
    if name is None:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command '{' '.join(argv[:2])}'\n\n{_usage()}", file=sys.stderr)
            return 2
        print(_usage())
        return 0
    module = importlib.import_module(COMMANDS[name])
    parser = argparse.ArgumentParser(prog=f"diffrepro {name}", description=(module.__doc__ or "").strip())
    module.configure(parser)
    args = parser.parse_args(rest)
    try:
        code = module.run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
