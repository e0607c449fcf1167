# Shared helpers for all rule files (functions only). Each job logs, benchmarks and calls the diffrepro CLI.
import json
import os
import sys
from pathlib import Path

# The params file the run was configured with: passed to every CLI call so the CLI validates the same config.
# Snakemake merges --configfile into `config`; we re-serialise the merged config so `--config` overrides count too.
# The copy is content-addressed (params-<sha256 of its text>.yaml), written once and never rewritten: a parse of
# another params file (a dry run, --lint) during a run writes its own copy and cannot change the jobs of this run.
# The CLI checks the name against the content. PARAMS is not a plain string on purpose: Snakemake records only plain
# params values as rerun triggers, so the whole-config hash in the path does not rerun every job on every change
# (each rule's `params: h=` section hash decides that).
# The params file(s) as the user named them (relative, so the same run gives the same job params in any checkout).
CONFIG_LABEL = ",".join(os.path.relpath(p) for p in (workflow.overwrite_configfiles or workflow.configfiles)) or "config"
# The CLI of the environment running Snakemake. Its console script, when present, names it the same way whether
# Snakemake was started as python, python3 or through its own script, so job params (and reruns) do not depend on it.
_CLI_SCRIPT = Path(sys.executable).parent / "diffrepro"
DIFFREPRO = str(_CLI_SCRIPT) if _CLI_SCRIPT.is_file() else f"{sys.executable} -m diffrepro"
# Report sections: each area's rule file appends the section files it produces (report.smk consumes them).
SECTIONS = []
# Samplers beyond sampling.samplers that every sweep model runs (NI's coefficient matrices); evaluated and aggregated.
EXTRA_SAMPLERS = []
# Extra metric files of samplers that only some sweep models run (e.g. NI's ni_file_<name>); aggregated too.
EXTRA_METRIC_FILES = []

# What the schema cannot express (finite numbers, bounds, cross-references, sampler options, duplicate YAML keys):
# refused here at parse time, before any job starts (diffrepro.validation).
from diffrepro.config import check_semantics as _check_semantics, read_yaml as _read_yaml
from diffrepro.errors import UserError as _UserError

try:
    for _configfile in workflow.overwrite_configfiles or workflow.configfiles:
        _read_yaml(_configfile)
    _check_semantics(config, CONFIG_LABEL)
except _UserError as _exc:  # one line, like `diffrepro validate`, not a parse traceback
    sys.exit(f"error: {_exc}")

DATASETS = list(config["datasets"])
MODELS = list(config["models"])
SWEEP_MODELS = list(config["sampling"]["models"])
SAMPLERS = list(config["sampling"]["samplers"])
# sampling.jobs: one sample / evaluate job per (model, sampler), or one per model looping over SAMPLERS
PER_MODEL_JOBS = config["sampling"].get("jobs", "per_sampler") == "per_model"


def dataset_of(model):
    return config["models"][model]["dataset"]


def source_of(model):
    """A model's `source` block: {kind: train} (trained by the pipeline) or a published checkpoint to import."""
    return config["models"][model].get("source") or {"kind": "train"}


TRAINED_MODELS = [m for m in MODELS if source_of(m)["kind"] == "train"]
IMPORTED_MODELS = [m for m in MODELS if source_of(m)["kind"] != "train"]


def one_of(names):
    """A wildcard constraint matching exactly these names (and nothing when the list is empty)."""
    import re

    return "|".join(re.escape(n) for n in names) if names else "(?!)"


class _RunParams:
    """The path of this run's resolved params file, formatted into shell commands as `{params.cfg}`."""

    def __init__(self, path):
        self.path = str(path)

    def __str__(self):
        return self.path


def _write_resolved_params():
    import yaml
    from diffrepro.config import write_resolved_params

    text = yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=True)
    return _RunParams(write_resolved_params(text, ".snakemake/diffrepro"))


PARAMS = _write_resolved_params()


def step_code(step):
    """Hash of the code the CLI step `diffrepro.steps.<step>` can import: in `params:`, a code change reruns the job
    (Snakemake's own code trigger sees only the shell line). Derived from the imports, never hand-kept."""
    from diffrepro.codedeps import code_hash

    return code_hash(f"diffrepro.steps.{step}")


def section_hash(*keys):
    """Hash of the config sections a job depends on: put it in `params:` so Snakemake reruns on a change."""
    from diffrepro.config import config_hash

    return config_hash({k: config.get(k) for k in keys})


def scored_datasets():
    """Datasets whose samples are scored against reference statistics: the sweep's and the MDM studies'."""
    return sorted({dataset_of(m) for m in SWEEP_MODELS} | set(config.get("mdm", {}).get("studies", {})))


def classifier_datasets():
    from diffrepro.metrics.spaces import classifier_path

    return sorted(d for d in DATASETS if classifier_path(config, d))


def train_stage_outputs():
    """Everything the `train` DVC stage produces (docs/DEVELOPING.md, pipeline files)."""
    return (
        [f"results/data/{d}/data.npz" for d in DATASETS]
        + [f"results/models/{m}/model.pt" for m in MODELS]
        + [f"results/classifiers/{d}/classifier.pt" for d in classifier_datasets()]
        + [f"results/refstats/{d}.pt" for d in scored_datasets()]
        + [f"results/mdm/{d}/section.json" for d in config.get("mdm", {}).get("studies", {})]  # MDM: data → section
    )


# --- Natural Inference (ni.smk) --------------------------------------------------------------------------------
NI_CFG = config.get("ni", {})
NI_SEARCH_MODELS = list(NI_CFG.get("search", {}).get("models", []))
NI_SHARP_MODELS = list(NI_CFG.get("sharpness", {}).get("models", []))
NI_CFG_MODEL = NI_CFG.get("cfg", {}).get("model")
NI_FILES = dict((NI_CFG.get("files") or {}).get("matrices", {}))
NI_FILE_MODELS = list((NI_CFG.get("files") or {}).get("models", [])) if NI_FILES else []


def _ni_classifier(model):
    dataset = dataset_of(model)
    return [f"results/classifiers/{dataset}/classifier.pt"] if dataset in config.get("classifier", {}) else []


def _ni_model_inputs(model):
    return {"model": f"results/models/{model}/model.pt", "data": f"results/data/{dataset_of(model)}/data.npz",
            "classifier": _ni_classifier(model)}


def ni_matrix_files(model, sampler):
    """The matrix files the coefficient-matrix sampler `sampler` runs on `model` (samplers.registry: ni_tuned and
    ni_sharp fitted by ni_fit under ni.search / ni.sharpness, ni_file_<name> = ni.files.matrices.<name>); [] otherwise."""
    if sampler == "ni_tuned" and model in NI_SEARCH_MODELS:
        return [f"results/ni/fit/{model}/ni_tuned_nfe{n:03d}.npz" for n in NI_CFG["search"].get("nfe", [])]
    if sampler == "ni_sharp" and model in NI_SHARP_MODELS:
        return [f"results/ni/fit/{model}/ni_sharp_nfe{NI_CFG['sharpness']['nfe']:03d}.npz"]
    name = sampler.removeprefix("ni_file_")
    if sampler.startswith("ni_file_") and model in NI_FILE_MODELS and name in NI_FILES:
        return [NI_FILES[name]]
    return []


def matrix_sampler_inputs(wildcards):
    """The `sample` rule's matrix files: a stored file (ni.files) only once present, so a fresh checkout still lists
    the DAG (the job then stops with an error naming the missing file)."""
    return [p for p in ni_matrix_files(wildcards.model, wildcards.sampler) if p.startswith("results/") or Path(p).exists()]


MATRIX_SWEEP_SAMPLERS = [s for s in ["ni_tuned", "ni_sharp", *(f"ni_file_{n}" for n in NI_FILES)]
                         if any(ni_matrix_files(m, s) for m in SWEEP_MODELS)]


def ni_fit_hash(wildcards):
    """Refit a matrix when the seed, the runtime or its own block (ni.search for ni_tuned, ni.sharpness) changes."""
    from diffrepro.config import config_hash

    block = "search" if wildcards.sampler == "ni_tuned" else "sharpness"
    return config_hash([config["seed"], config.get("runtime"), NI_CFG.get(block)])


def _ni_tuned_source():
    return NI_CFG.get("cfg", {}).get("tuned_from") or (NI_SEARCH_MODELS[0] if NI_SEARCH_MODELS else None)


# --- studies (studies.smk) --------------------------------------------------------------------------------
STUDIES = config.get("studies") or {}
DEGRADATION = STUDIES.get("degradation") or {}
GEOMETRY = STUDIES.get("geometry") or {}
DEGRADATION_DIR = "results/studies/degradation"
GEOMETRY_DIR = "results/studies/geometry"


def _degradation_trained_model():
    trained = DEGRADATION.get("trained")
    return trained["model"] if trained else None


def _degradation_datasets():
    names = {s["dataset"] for s in DEGRADATION.get("sets", []) if s.get("kind") == "dataset"}
    if _degradation_trained_model():
        names.add(dataset_of(_degradation_trained_model()))
    return sorted(names)


def _degradation_inputs(wildcards):
    inputs = {f"data_{d}": f"results/data/{d}/data.npz" for d in _degradation_datasets()}
    if _degradation_trained_model():
        inputs["checkpoint"] = f"results/models/{_degradation_trained_model()}/model.pt"
    return inputs


def _degradation_args():
    args = [f"--data {d}=results/data/{d}/data.npz" for d in _degradation_datasets()]
    if _degradation_trained_model():
        args.append(f"--checkpoint results/models/{_degradation_trained_model()}/model.pt")
    return " ".join(args)


# --- multivariate diffusions (mdm.smk) ----------------------------------------------------------------------
MDM_STUDIES = config.get("mdm", {}).get("studies", {})
for _name in MDM_STUDIES:
    if _name not in config["datasets"]:
        raise ValueError(f"mdm.studies.{_name}: '{_name}' is not a key of 'datasets' (known: {sorted(config['datasets'])})")


def mdm_hash(wildcards):
    """Reruns a study's jobs when its own config (or the shared mdm keys, or its dataset) changes."""
    from diffrepro.config import config_hash

    shared = {k: v for k, v in config.get("mdm", {}).items() if k != "studies"}
    return config_hash([shared, MDM_STUDIES[wildcards.dataset], config["datasets"][wildcards.dataset]])


def mdm_models(wildcards):
    study = MDM_STUDIES[wildcards.dataset]
    return expand("results/mdm/{dataset}/{diffusion}/seed{seed}/model.pt", dataset=wildcards.dataset,
                  diffusion=study["diffusions"], seed=study["seeds"])


# --- AMED predictors (amed.smk) --------------------------------------------------------------------------------
AMED_SWEEP = [s for s in SAMPLERS if s == "amed" or s.startswith("amed_plugin_")]


def amed_nfe(model):
    """NFE of sampling.amed.nfe that the model's sweep also runs (sampling.per_model may narrow the NFE list)."""
    nfe = config["sampling"].get("per_model", {}).get(model, {}).get("nfe", config["sampling"]["nfe"])
    return [n for n in config["sampling"].get("amed", {}).get("nfe", []) if n in nfe]


def amed_predictor_files(model, sampler):
    if sampler not in AMED_SWEEP:
        return []
    return [f"results/amed/{model}/{sampler}_nfe{n}.pt" for n in amed_nfe(model)]


AMED_FILES = [p for m in SWEEP_MODELS for s in AMED_SWEEP for p in amed_predictor_files(m, s)]


def amed_hash(wildcards):
    """Rerun a predictor when its training settings, its sampler's options or the grids change."""
    from diffrepro.config import config_hash

    s = config["sampling"]
    return config_hash([config["seed"], s.get("amed"), s.get("sampler_options", {}).get(wildcards.sampler),
                        s.get("grid_options"), s.get("per_model", {}).get(wildcards.model, {}).get("grid_options")])


# --- real image data (real.smk) -------------------------------------------------------------------------------
from diffrepro.metrics.spaces import feature_kind

REAL_KINDS = ("mnist", "fashion_mnist", "cifar10")
REAL_DATASETS = sorted({dataset_of(m) for m in SWEEP_MODELS if config["datasets"][dataset_of(m)]["kind"] in REAL_KINDS})


def _real_inputs(wc):
    models = [m for m in SWEEP_MODELS if dataset_of(m) == wc.dataset]
    inputs = {"data": f"results/data/{wc.dataset}/data.npz", "refstats": f"results/refstats/{wc.dataset}.pt",
              "metrics": "results/tables/metrics_agg.parquet",
              "classifier": f"results/classifiers/{wc.dataset}/classifier.pt",
              "reference": expand("results/samples/{model}/_reference.npz", model=models)}
    if feature_kind(config, wc.dataset) != "classifier":  # the classifier space is scored from the sample files
        inputs["samples"] = expand("results/samples/{model}/{sampler}.npz", model=models,
                                   sampler=SAMPLERS + [s for s in EXTRA_SAMPLERS if s not in SAMPLERS])
    return inputs
