# owned by the real-data area; see docs/DEVELOPING.md ("Report sections").
# real_section: each real image dataset of the sweep (MNIST / Fashion-MNIST / CIFAR-10) -> results/real/{dataset}/
#   section.json: what its FIDs mean (detector, samples, test split), train-vs-test and noise-vs-test anchors, and FID
#   against NFE of the high-order samplers; plus our classifier's feature space when the sweep scores in Inception.
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
        threads: 2  # the DAG's last scoring job (Inception on the anchors and references): both cores of a 2-core box
        shell:
            "{params.cli} real section --params {params.cfg} --dataset {wildcards.dataset} --data {input.data}"
            " --refstats {input.refstats} --classifier {input.classifier} --metrics {input.metrics} {params.samples}"
            " --reference {input.reference}"
            " --out-dir results/real/{wildcards.dataset} --config-name {params.config_name}"
            " --threads {threads} > {log} 2>&1"

    SECTIONS.extend(expand("results/real/{dataset}/section.json", dataset=REAL_DATASETS))
