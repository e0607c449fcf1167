# owned by the train area; see docs/DEVELOPING.md
# train: one job per trained model (TRAINED_MODELS) -> results/models/{model}/model.pt (+ train.json).
# params.h reruns a model when its spec, its dataset's spec or the master seed changes. Checkpoints in
# results/models/{model}/ckpt/ are deliberately not outputs: Snakemake keeps them when a job dies, and the rerun
# resumes from the newest one (bit-identical to an uninterrupted run).
from diffrepro.config import config_hash


rule train:
    # the longest jobs of the train stage start first; the short MDM and classifier jobs fill the other core
    priority: 10
    wildcard_constraints:
        model=one_of(TRAINED_MODELS),
    input:
        data=lambda wc: f"results/data/{dataset_of(wc.model)}/data.npz",
    output:
        model="results/models/{model}/model.pt",
        summary="results/models/{model}/train.json",
    params:
        h=lambda wc: config_hash([config["seed"], config["models"][wc.model],
                                     config["datasets"][dataset_of(wc.model)]]),
        cli=DIFFREPRO,
        code=step_code("train"),
        cfg=PARAMS,
    log:
        "logs/train/{model}.log",
    benchmark:
        "benchmarks/train/{model}.tsv"
    threads: 1
    shell:
        "{params.cli} train --params {params.cfg} --model {wildcards.model} --data {input.data} "
        "--out-dir results/models/{wildcards.model} --threads {threads} > {log} 2>&1"


# import_model: models whose `source` is a published checkpoint (edm pickle, diffusers folder) get the same
# results/models/{model}/model.pt, a small descriptor (path, sha256, shape, schedule; no weights). The checkpoint is an
# input only once it exists, so a dry run lists the job without it and the job itself fails fast naming the file.
rule import_model:
    wildcard_constraints:
        model=one_of(IMPORTED_MODELS),
    input:
        checkpoint=lambda wc: [p for p in [source_of(wc.model)["path"]] if os.path.exists(p)],
    output:
        model="results/models/{model}/model.pt",
    params:
        h=lambda wc: config_hash(config["models"][wc.model]),
        cli=DIFFREPRO,
        code=step_code("import_model"),
        cfg=PARAMS,
    log:
        "logs/import_model/{model}.log",
    benchmark:
        "benchmarks/import_model/{model}.tsv"
    threads: 1
    shell:
        "{params.cli} import-model --params {params.cfg} --model {wildcards.model} --out {output.model} > {log} 2>&1"
