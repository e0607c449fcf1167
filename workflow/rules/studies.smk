# owned by the studies area; see docs/DEVELOPING.md
# Weighted-sum degradation (NI §3.2) and trajectory geometry (GEO) studies. Each writes section.json for the report.
from diffrepro.config import config_hash

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


if DEGRADATION.get("enabled", True):

    rule study_degradation:
        input:
            unpack(_degradation_inputs),
        output:
            section=f"{DEGRADATION_DIR}/section.json",
            cells=f"{DEGRADATION_DIR}/cells.parquet",
            critical=f"{DEGRADATION_DIR}/critical_t.parquet",
            figure=f"{DEGRADATION_DIR}/critical_t.png",
        params:
            h=config_hash({k: config.get(k) for k in ("seed", "report")} | {"degradation": DEGRADATION}),
            args=_degradation_args(),
            out=DEGRADATION_DIR,
        threads: 2
        log:
            "logs/study_degradation/study_degradation.log",
        benchmark:
            "benchmarks/study_degradation/study_degradation.tsv"
        shell:
            "{DIFFREPRO} study degradation --params {PARAMS} --out-dir {params.out} {params.args} --threads {threads}"
            " > {log} 2>&1"

    SECTIONS.append(f"{DEGRADATION_DIR}/section.json")


if GEOMETRY.get("enabled", True) and GEOMETRY.get("model"):

    rule study_geometry:
        input:
            checkpoint=f"results/models/{GEOMETRY['model']}/model.pt",
            data=f"results/data/{dataset_of(GEOMETRY['model'])}/data.npz",
        output:
            section=f"{GEOMETRY_DIR}/section.json",
            per_sigma=f"{GEOMETRY_DIR}/per_sigma.parquet",
            summary=f"{GEOMETRY_DIR}/summary.parquet",
            trajectories=f"{GEOMETRY_DIR}/trajectories.npz",
        params:
            h=config_hash({k: config.get(k) for k in ("seed", "report")} | {"geometry": GEOMETRY}),
            model=GEOMETRY["model"],
            out=GEOMETRY_DIR,
        threads: 2
        log:
            "logs/study_geometry/study_geometry.log",
        benchmark:
            "benchmarks/study_geometry/study_geometry.tsv"
        shell:
            "{DIFFREPRO} study geometry --params {PARAMS} --model {params.model} --checkpoint {input.checkpoint}"
            " --data {input.data} --out-dir {params.out} --threads {threads} > {log} 2>&1"

    SECTIONS.append(f"{GEOMETRY_DIR}/section.json")
