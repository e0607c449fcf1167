# owned by the studies area; see docs/DEVELOPING.md
# Weighted-sum degradation (NI §3.2) and trajectory geometry (GEO) studies. Each writes section.json for the report.
from diffrepro.config import config_hash

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
            cli=DIFFREPRO,
            code=step_code("study_degradation"),
            cfg=PARAMS,
            out_dir=lambda wc, output: os.path.dirname(output.section),
            h=config_hash({k: config.get(k) for k in ("seed", "report")} | {"degradation": DEGRADATION}),
            args=_degradation_args(),
        threads: 2
        log:
            "logs/study_degradation/study_degradation.log",
        benchmark:
            "benchmarks/study_degradation/study_degradation.tsv"
        shell:
            "{params.cli} study degradation --params {params.cfg} --out-dir {params.out_dir} {params.args} --threads {threads}"
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
            cli=DIFFREPRO,
            code=step_code("study_geometry"),
            cfg=PARAMS,
            out_dir=lambda wc, output: os.path.dirname(output.section),
            h=config_hash({k: config.get(k) for k in ("seed", "report")} | {"geometry": GEOMETRY}),
            model=GEOMETRY["model"],
        threads: 2
        log:
            "logs/study_geometry/study_geometry.log",
        benchmark:
            "benchmarks/study_geometry/study_geometry.tsv"
        shell:
            "{params.cli} study geometry --params {params.cfg} --model {params.model} --checkpoint {input.checkpoint}"
            " --data {input.data} --out-dir {params.out_dir} --threads {threads} > {log} 2>&1"

    SECTIONS.append(f"{GEOMETRY_DIR}/section.json")
