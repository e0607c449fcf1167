# owned by the data area; see docs/DEVELOPING.md
# prepare: one job per dataset in config["datasets"] -> results/data/{dataset}/data.{npz,json}.
# params.h reruns a dataset when its own spec or the master seed changes (not when another dataset's does).
from diffrepro.config import config_hash


rule prepare:
    output:
        npz="results/data/{dataset}/data.npz",
        meta="results/data/{dataset}/data.json",
    params:
        h=lambda wc: config_hash([config["seed"], config["datasets"][wc.dataset]]),
        cli=DIFFREPRO,
        code=step_code("prepare"),
        cfg=PARAMS,
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "benchmarks/prepare/{dataset}.tsv"
    threads: 1
    shell:
        "{params.cli} prepare --params {params.cfg} --dataset {wildcards.dataset} "
        "--out-dir results/data/{wildcards.dataset} > {log} 2>&1"
