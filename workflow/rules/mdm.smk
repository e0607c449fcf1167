# owned by the mdm area; see docs/DEVELOPING.md
# Multivariate diffusions (spec research/mdm.md): one training job per (dataset, diffusion, seed) of
# mdm.studies, one evaluation job per dataset that writes the report section.



rule mdm_train:
    input:
        "results/data/{dataset}/data.npz",
    output:
        "results/mdm/{dataset}/{diffusion}/seed{seed}/model.pt",
    log:
        "logs/mdm_train/{dataset}/{diffusion}/seed{seed}.log",
    benchmark:
        "benchmarks/mdm_train/{dataset}/{diffusion}/seed{seed}.tsv"
    params:
        cli=DIFFREPRO,
        cfg=PARAMS,
        h=mdm_hash,
    threads: 1
    shell:
        "{params.cli} mdm train --params {params.cfg} --dataset {wildcards.dataset} --diffusion {wildcards.diffusion}"
        " --seed {wildcards.seed} --data {input} --out {output} --threads {threads} > {log} 2>&1"


rule mdm_evaluate:
    input:
        models=mdm_models,
        data="results/data/{dataset}/data.npz",
    output:
        section="results/mdm/{dataset}/section.json",
        evaluation="results/mdm/{dataset}/evaluation.json",
        samples="results/mdm/{dataset}/samples.npz",
        figure="results/mdm/{dataset}/samples.png",
    log:
        "logs/mdm_evaluate/{dataset}.log",
    benchmark:
        "benchmarks/mdm_evaluate/{dataset}.tsv"
    params:
        cli=DIFFREPRO,
        cfg=PARAMS,
        h=mdm_hash,
        config_name=CONFIG_LABEL,
    threads: 1
    shell:
        "{params.cli} mdm evaluate --params {params.cfg} --dataset {wildcards.dataset} --models {input.models}"
        " --data {input.data} --out-dir results/mdm/{wildcards.dataset} --config-name {params.config_name}"
        " --threads {threads} > {log} 2>&1"


SECTIONS.extend(expand("results/mdm/{dataset}/section.json", dataset=list(MDM_STUDIES)))
