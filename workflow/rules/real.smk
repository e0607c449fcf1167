# owned by the real-data area; see docs/DEVELOPING.md ("Report sections").
# real_section: each real image dataset of the sweep (MNIST / Fashion-MNIST / CIFAR-10) -> results/real/{dataset}/
#   section.json: what its FIDs mean (detector, samples, test split), train-vs-test and noise-vs-test anchors, and FID
#   against NFE of the high-order samplers; plus our classifier's feature space when the sweep scores in Inception.
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


if REAL_DATASETS:

    rule real_section:
        input:
            unpack(_real_inputs),
        output:
            section="results/real/{dataset}/section.json",
            anchors="results/real/{dataset}/anchors.json",
        wildcard_constraints:
            dataset="|".join(REAL_DATASETS),
        params:
            cli=DIFFREPRO,
            code=step_code("real_section"),
            cfg=PARAMS,
            h=section_hash("seed", "metrics", "sampling"),
            config_name=CONFIG_LABEL,
            samples=lambda wc, input: " ".join(["--samples", *input.samples]) if "samples" in input.keys() else "",
        log:
            "logs/real_section/{dataset}.log",
        benchmark:
            "benchmarks/real_section/{dataset}.tsv"
        threads: 1
        shell:
            "{params.cli} real section --params {params.cfg} --dataset {wildcards.dataset} --data {input.data}"
            " --refstats {input.refstats} --classifier {input.classifier} --metrics {input.metrics} {params.samples}"
            " --reference {input.reference}"
            " --out-dir results/real/{wildcards.dataset} --config-name {params.config_name}"
            " --threads {threads} > {log} 2>&1"

    SECTIONS.extend(expand("results/real/{dataset}/section.json", dataset=REAL_DATASETS))
