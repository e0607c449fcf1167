# diffrepro workflow entry point. Orchestration only: every rule calls `diffrepro <step>` (src/diffrepro/steps/).
#   snakemake --profile workflow/profiles/local                       (the params file named in params/run.yaml)
#   snakemake --profile workflow/profiles/local --configfile params/smoke.yaml
from snakemake.utils import min_version, validate

from diffrepro.config import selected_params_file

min_version("9.19")


# The params file selected in params/run.yaml (what DVC versions; params/default.yaml in a fresh clone) unless one is
# given (`--configfile params/X.yaml`); never merged with another.
if not config:

    configfile: selected_params_file()


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
include: "workflow/rules/real.smk"
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
        [s for s in SECTIONS if not s.startswith("results/mdm/")],  # the MDM study runs in the train stage
