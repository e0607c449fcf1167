# owned by the metrics area; see docs/DEVELOPING.md ("CLI commands and pipeline files", "Workflow rules").
# train_classifier: image datasets scored in the classifier feature space -> results/classifiers/{dataset}/classifier.pt
# reference_stats:  every sampled dataset -> results/refstats/{dataset}.pt (test-split features or raw test points;
#                   from metrics.reference_stats[dataset] (.npz of mu, sigma) when set)
# evaluate:         one job per (model, sampler) sample file -> results/metrics/{model}/{sampler}.json (list of rows)
# Helpers live in diffrepro.metrics.spaces (torch-free), so parsing the workflow stays fast.
from diffrepro.config import config_hash
from diffrepro.metrics.spaces import refstats_inputs, with_classifier

METRIC_FILES = expand("results/metrics/{model}/{sampler}.json", model=SWEEP_MODELS, sampler=SAMPLERS)
CLASSIFIER_FLAG = lambda wildcards, input: f"--classifier {input.classifier}" if "classifier" in input.keys() else ""
DATA_FLAG = lambda wildcards, input: f"--data {input.data}" if "data" in input.keys() else ""


rule train_classifier:
    input:
        data="results/data/{dataset}/data.npz",
    output:
        "results/classifiers/{dataset}/classifier.pt",
    params:
        # rerun when this classifier's spec, its dataset's spec or the master seed changes
        h=lambda wc: config_hash(
            [config["seed"], config.get("classifier", {}).get(wc.dataset), config["datasets"][wc.dataset]]
        ),
        cli=DIFFREPRO,
        code=step_code("train_classifier"),
        cfg=PARAMS,
    log:
        "logs/train_classifier/{dataset}.log",
    benchmark:
        "benchmarks/train_classifier/{dataset}.tsv"
    threads: 1
    shell:
        "{params.cli} train-classifier --params {params.cfg} --dataset {wildcards.dataset} --data {input.data} "
        "--out {output} --threads {threads} > {log} 2>&1"


rule reference_stats:
    input:
        unpack(lambda wc: refstats_inputs(config, wc.dataset)),
    output:
        "results/refstats/{dataset}.pt",
    params:
        h=section_hash("seed", "metrics"),
        clf=CLASSIFIER_FLAG,
        data=DATA_FLAG,
        cli=DIFFREPRO,
        code=step_code("reference_stats"),
        cfg=PARAMS,
    log:
        "logs/reference_stats/{dataset}.log",
    benchmark:
        "benchmarks/reference_stats/{dataset}.tsv"
    threads: 1
    shell:
        "{params.cli} reference-stats --params {params.cfg} --dataset {wildcards.dataset} {params.data} "
        "{params.clf} --out {output} --threads {threads} > {log} 2>&1"


rule evaluate:
    input:
        unpack(
            lambda wc: with_classifier(
                config,
                dataset_of(wc.model),
                samples=f"results/samples/{wc.model}/{wc.sampler}.npz",
                manifest=f"results/samples/{wc.model}/{wc.sampler}.json",
                reference=f"results/samples/{wc.model}/_reference.npz",
                refstats=f"results/refstats/{dataset_of(wc.model)}.pt",
            )
        ),
    output:
        "results/metrics/{model}/{sampler}.json",
    wildcard_constraints:
        # any sample file but the reference: sampling.samplers and the coefficient-matrix samplers (EXTRA_SAMPLERS)
        sampler="[A-Za-z0-9][A-Za-z0-9_.-]*",
    params:
        h=section_hash("seed", "metrics"),
        clf=CLASSIFIER_FLAG,
        cli=DIFFREPRO,
        code=step_code("evaluate"),
        cfg=PARAMS,
        samplers=lambda wc: wc.sampler,
    log:
        "logs/evaluate/{model}/{sampler}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{sampler}.tsv"
    threads: 1
    shell:
        "{params.cli} evaluate --params {params.cfg} --model {wildcards.model} --sampler {params.samplers} "
        "--samples {input.samples} --reference {input.reference} --refstats {input.refstats} {params.clf} "
        "--out {output} --threads {threads} > {log} 2>&1"


if PER_MODEL_JOBS:

    # the same step over sampling.samplers of one model; ruleorder leaves the coefficient-matrix samplers to `evaluate`
    use rule evaluate as evaluate_model with:
        input:
            unpack(
                lambda wc: with_classifier(
                    config,
                    dataset_of(wc.model),
                    samples=expand("results/samples/{model}/{sampler}.npz", model=wc.model, sampler=SAMPLERS),
                    manifest=expand("results/samples/{model}/{sampler}.json", model=wc.model, sampler=SAMPLERS),
                    reference=f"results/samples/{wc.model}/_reference.npz",
                    refstats=f"results/refstats/{dataset_of(wc.model)}.pt",
                )
            ),
        output:
            expand("results/metrics/{{model}}/{sampler}.json", sampler=SAMPLERS),
        params:
            samplers=" ".join(SAMPLERS),
        log:
            "logs/evaluate/{model}/all_samplers.log",
        benchmark:
            "benchmarks/evaluate/{model}/all_samplers.tsv"

    ruleorder: evaluate_model > evaluate
