# Shared helpers for all rule files. Every rule: `log:` + `benchmark:`, calls the diffrepro CLI only.
import json
import os
import sys
from pathlib import Path

# The params file the run was configured with: passed to every CLI call so the CLI validates the same config.
# Snakemake merges --configfile into `config`; we re-serialise the merged config so `--config` overrides count too.
PARAMS = ".snakemake/diffrepro/params.resolved.yaml"
DIFFREPRO = f"{sys.executable} -m diffrepro"
# Report sections: each area's rule file appends the section files it produces (report.smk consumes them).
SECTIONS = []
# Extra sweep samplers other areas produce in the sweep's file format (e.g. NI's ni_tuned); evaluated and aggregated.
EXTRA_SAMPLERS = []

DATASETS = list(config["datasets"])
MODELS = list(config["models"])
SWEEP_MODELS = list(config["sampling"]["models"])
SAMPLERS = list(config["sampling"]["samplers"])


def dataset_of(model):
    return config["models"][model]["dataset"]


def _write_resolved_params():
    import yaml

    text = yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=True)
    path = Path(PARAMS)
    if not path.exists() or path.read_text() != text:  # rewrite only on change: keeps mtimes stable
        import tempfile

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")  # unique: SLURM jobs re-parse concurrently
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)


_write_resolved_params()


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(MODELS),


def section_hash(*keys):
    """Hash of config sections a rule depends on: put it in `params:` so Snakemake reruns on a change."""
    from diffrepro.config import config_hash

    return config_hash({k: config.get(k) for k in keys})


def sampled_datasets():
    return sorted({dataset_of(m) for m in SWEEP_MODELS})


def classifier_datasets():
    from diffrepro.metrics.spaces import classifier_path

    return sorted(d for d in DATASETS if classifier_path(config, d))


def train_stage_outputs():
    """Everything the `train` DVC stage produces (docs/DEVELOPING.md, pipeline files)."""
    return (
        [f"results/data/{d}/data.npz" for d in DATASETS]
        + [f"results/models/{m}/model.pt" for m in MODELS]
        + [f"results/classifiers/{d}/classifier.pt" for d in classifier_datasets()]
        + [f"results/refstats/{d}.pt" for d in sampled_datasets()]
    )
