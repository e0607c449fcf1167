# owned by the mdm area; see docs/DEVELOPING.md
# Multivariate diffusions (spec research/mdm.md): one training job per (dataset, diffusion, seed) of
# mdm.studies, one evaluation job per dataset that writes the report section.
MDM_STUDIES = config.get("mdm", {}).get("studies", {})
for _name in MDM_STUDIES:
    if _name not in config["datasets"]:
        raise ValueError(f"mdm.studies.{_name}: '{_name}' is not a key of 'datasets' (known: {sorted(config['datasets'])})")
MDM_CONFIG_NAME = str(workflow.configfiles[-1]) if getattr(workflow, "configfiles", None) else "params/default.yaml"


wildcard_constraints:
    diffusion="vp|cld|alda|malda|learned2|learned3",
    seed=r"\d+",


def mdm_hash(wildcards):
    """Reruns a study's jobs when its own config (or the shared mdm keys, or its dataset) changes."""
    from diffrepro.config import config_hash

    shared = {k: v for k, v in config.get("mdm", {}).items() if k != "studies"}
    return config_hash([shared, MDM_STUDIES[wildcards.dataset], config["datasets"][wildcards.dataset]])


def mdm_models(wildcards):
    study = MDM_STUDIES[wildcards.dataset]
    return expand("results/mdm/{dataset}/{diffusion}/seed{seed}/model.pt", dataset=wildcards.dataset,
                  diffusion=study["diffusions"], seed=study["seeds"])


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
        h=mdm_hash,
    threads: 1
    shell:
        "{DIFFREPRO} mdm train --params {PARAMS} --dataset {wildcards.dataset} --diffusion {wildcards.diffusion}"
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
        h=mdm_hash,
        config_name=MDM_CONFIG_NAME,
    threads: 1
    shell:
        "{DIFFREPRO} mdm evaluate --params {PARAMS} --dataset {wildcards.dataset} --models {input.models}"
        " --data {input.data} --out-dir results/mdm/{wildcards.dataset} --config-name {params.config_name}"
        " --threads {threads} > {log} 2>&1"


SECTIONS.extend(expand("results/mdm/{dataset}/section.json", dataset=list(MDM_STUDIES)))
