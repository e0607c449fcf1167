# owned by the report area; see docs/DEVELOPING.md ("CLI commands and pipeline files", "Report sections").
# aggregate: every sweep metrics file -> results/tables/metrics{,_agg}.{parquet,csv} + results/metrics.json (DVC metrics)
# report:    tables + samples + every area's section.json (SECTIONS) -> reports/index.html, reports/report.md
import glob

# Samplers other areas sweep on top of sampling.samplers (e.g. Natural Inference's tuned matrices): a rule file that
# produces results/metrics/<model>/<name>.json for every model in SWEEP_MODELS appends <name> to EXTRA_SAMPLERS.
EXTRA_SWEEP = [s for s in EXTRA_SAMPLERS if s not in SAMPLERS]
REPORT_TEMPLATES = sorted(glob.glob("src/diffrepro/reports/templates/*.j2"))
PAPER_NUMBERS = "src/diffrepro/data/paper_numbers.yaml"
# The params file(s) the run was configured with, as the report names them (PARAMS is the merged copy).


localrules:
    aggregate,
    report,


rule aggregate:
    input:
        expand("results/metrics/{model}/{sampler}.json", model=SWEEP_MODELS, sampler=SAMPLERS + EXTRA_SWEEP),
        EXTRA_METRIC_FILES,
    output:
        rows="results/tables/metrics.parquet",
        rows_csv="results/tables/metrics.csv",
        cells="results/tables/metrics_agg.parquet",
        cells_csv="results/tables/metrics_agg.csv",
        summary="results/metrics.json",
    params:
        h=section_hash("sampling", "metrics"),
        cli=DIFFREPRO,
        code=step_code("aggregate"),
        cfg=PARAMS,
    log:
        "logs/aggregate/aggregate.log",
    benchmark:
        "benchmarks/aggregate/aggregate.tsv"
    shell:
        "{params.cli} aggregate --params {params.cfg} --inputs {input} --out-dir results/tables"
        " --summary {output.summary} 2> {log}"


rule report:
    input:
        cells="results/tables/metrics_agg.parquet",
        samples=expand("results/samples/{model}/{sampler}.npz", model=SWEEP_MODELS, sampler=SAMPLERS + EXTRA_SWEEP),
        # the sample manifests: the GITS section reads the teacher-grid indices each GITS cell chose
        manifests=expand("results/samples/{model}/{sampler}.json", model=SWEEP_MODELS, sampler=SAMPLERS),
        # the setup paragraph describes every dataset; the sample mosaics show training images beside samples
        data=expand("results/data/{dataset}/data.{ext}", dataset=DATASETS, ext=["npz", "json"]),
        sections=SECTIONS,
        templates=REPORT_TEMPLATES,
        papers=PAPER_NUMBERS,
    output:
        html="reports/index.html",
        md="reports/report.md",
    params:
        h=section_hash("report"),
        label=CONFIG_LABEL,
        cli=DIFFREPRO,
        code=step_code("report"),
        cfg=PARAMS,
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    shell:
        "{params.cli} report --params {params.cfg} --results results --benchmarks benchmarks --out-dir reports"
        " --sections {input.sections} --config-label {params.label:q} 2> {log}"
