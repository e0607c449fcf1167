# owned by the amed area; see docs/DEVELOPING.md "Workflow rules" and docs/amed.md.
# amed_train:   one job per (sweep model, AMED sampler in sampling.samplers, NFE in sampling.amed.nfe) ->
#               results/amed/{model}/{sampler}_nfe{nfe}.pt (the trained predictor: an artifact, cached)
# amed_section: every predictor + the AMED sample manifests -> results/amed/section.json (chosen-r figure, losses)
# The sweep's sample job of an AMED sampler takes that model's predictors as declared inputs (sample.smk).
from diffrepro.config import config_hash

AMED_SWEEP = [s for s in SAMPLERS if s == "amed" or s.startswith("amed_plugin_")]


def amed_nfe(model):
    """NFE of sampling.amed.nfe that the model's sweep also runs (sampling.per_model may narrow the NFE list)."""
    nfe = config["sampling"].get("per_model", {}).get(model, {}).get("nfe", config["sampling"]["nfe"])
    return [n for n in config["sampling"].get("amed", {}).get("nfe", []) if n in nfe]


def amed_predictor_files(model, sampler):
    if sampler not in AMED_SWEEP:
        return []
    return [f"results/amed/{model}/{sampler}_nfe{n}.pt" for n in amed_nfe(model)]


AMED_FILES = [p for m in SWEEP_MODELS for s in AMED_SWEEP for p in amed_predictor_files(m, s)]


def amed_hash(wildcards):
    """Rerun a predictor when its training settings, its sampler's options or the grids change."""
    s = config["sampling"]
    return config_hash([config["seed"], s.get("amed"), s.get("sampler_options", {}).get(wildcards.sampler),
                        s.get("grid_options"), s.get("per_model", {}).get(wildcards.model, {}).get("grid_options")])


if AMED_FILES:

    rule amed_train:
        input:
            model="results/models/{model}/model.pt",
        output:
            predictor="results/amed/{model}/{sampler}_nfe{nfe}.pt",
            summary="results/amed/{model}/{sampler}_nfe{nfe}.json",
        wildcard_constraints:
            sampler="|".join(AMED_SWEEP),
            nfe=r"\d+",
        params:
            cli=DIFFREPRO,
            cfg=PARAMS,
            h=amed_hash,
        log:
            "logs/amed_train/{model}/{sampler}_nfe{nfe}.log",
        benchmark:
            "benchmarks/amed_train/{model}/{sampler}_nfe{nfe}.tsv"
        threads: 1
        shell:
            "{params.cli} amed train --params {params.cfg} --model {wildcards.model} --solver {wildcards.sampler} "
            "--nfe {wildcards.nfe} --checkpoint {input.model} --out {output.predictor} --threads {threads} 2> {log}"

    rule amed_section:
        input:
            predictors=AMED_FILES,
            manifests=expand("results/samples/{model}/{sampler}.json", model=SWEEP_MODELS, sampler=AMED_SWEEP),
        output:
            section="results/amed/section.json",
        params:
            cli=DIFFREPRO,
            cfg=PARAMS,
            h=section_hash("sampling"),
        log:
            "logs/amed_section/amed_section.log",
        benchmark:
            "benchmarks/amed_section/amed_section.tsv"
        threads: 1
        shell:
            "{params.cli} amed section --params {params.cfg} --predictors {input.predictors} "
            "--manifests {input.manifests} --out-dir results/amed 2> {log}"

    SECTIONS.append("results/amed/section.json")
