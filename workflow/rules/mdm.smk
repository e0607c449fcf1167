# owned by the mdm area; see docs/DEVELOPING.md
# Multivariate diffusions (MDM, ICLR 2023): one training job per (dataset, diffusion, seed) of
# mdm.studies, one evaluation job per dataset that writes the report section. Samples are scored with the sweep's
# metrics (the dataset's reference statistics, and its feature classifier for images).



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
        code=step_code("mdm_train"),
        cfg=PARAMS,
        h=mdm_hash,
    threads: 1
    shell:
        "{params.cli} mdm train --params {params.cfg} --dataset {wildcards.dataset} --diffusion {wildcards.diffusion}"
        " --seed {wildcards.seed} --data {input} --out {output} --threads {threads} > {log} 2>&1"


rule mdm_evaluate:
    input:
        unpack(lambda wc: with_classifier(config, wc.dataset, models=mdm_models(wc),
                                          data=f"results/data/{wc.dataset}/data.npz",
                                          refstats=f"results/refstats/{wc.dataset}.pt")),
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
        code=step_code("mdm_evaluate"),
        cfg=PARAMS,
        h=mdm_hash,
        hm=section_hash("metrics"),
        clf=CLASSIFIER_FLAG,
        config_name=CONFIG_LABEL,
    threads: 1
    shell:
        "{params.cli} mdm evaluate --params {params.cfg} --dataset {wildcards.dataset} --models {input.models}"
        " --data {input.data} --refstats {input.refstats} {params.clf}"
        " --out-dir results/mdm/{wildcards.dataset} --config-name {params.config_name}"
        " --threads {threads} > {log} 2>&1"


SECTIONS.extend(expand("results/mdm/{dataset}/section.json", dataset=list(MDM_STUDIES)))
