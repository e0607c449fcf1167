# owned by the train area; see docs/DEVELOPING.md
# train: one job per model in config["models"] -> results/models/{model}/model.pt (+ train.json).
# params.h reruns a model when its spec, its dataset's spec or the master seed changes. Checkpoints in
# results/models/{model}/ckpt/ are deliberately not outputs: Snakemake keeps them when a job dies, and the rerun
# resumes from the newest one (bit-identical to an uninterrupted run).
from diffrepro.config import config_hash


rule train:
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
