# diffrepro workflow entry point. Orchestration only: every rule calls `diffrepro <step>` (src/diffrepro/steps/).
#   snakemake --profile workflow/profiles/local                       (params/default.yaml)
#   snakemake --profile workflow/profiles/local --configfile params/smoke.yaml
from snakemake.utils import min_version, validate

min_version("9.19")


# params/default.yaml unless a params file is given (`--configfile params/X.yaml`); never merged with the default.
if not config:

    configfile: "params/default.yaml"


validate(config, "workflow/schemas/params.schema.yaml")


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(MODELS),
    diffusion="vp|cld|alda|malda|learned2|learned3",
    seed=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/amed.smk"
include: "workflow/rules/ni.smk"
include: "workflow/rules/studies.smk"
include: "workflow/rules/mdm.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "reports/index.html",
        "reports/report.md",


# Targets of the DVC stages (dvc.yaml): one per expensive boundary.
rule stage_train:
    input:
        train_stage_outputs(),


rule stage_sweep:
    input:
        "results/metrics.json",


rule stage_studies:
    input:
        SECTIONS,
