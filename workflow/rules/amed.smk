# owned by the amed area; see docs/DEVELOPING.md "Workflow rules" and docs/amed.md.
# amed_train:   one job per (sweep model, AMED sampler in sampling.samplers, NFE in sampling.amed.nfe) ->
#               results/amed/{model}/{sampler}_nfe{nfe}.pt (the trained predictor: an artifact, cached)
# amed_section: every predictor + the AMED sample manifests -> results/studies/amed/section.json (chosen-r figure,
#               losses; under results/studies so that it is an output of the DVC studies stage)
# The sweep's sample job of an AMED sampler takes that model's predictors as declared inputs (sample.smk).
# Helpers (AMED_SWEEP, amed_predictor_files, AMED_FILES, amed_hash) live in common.smk.
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
            code=step_code("amed_train"),
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
            section="results/studies/amed/section.json",
        params:
            cli=DIFFREPRO,
            code=step_code("amed_section"),
            cfg=PARAMS,
            h=section_hash("sampling"),
        log:
            "logs/amed_section/amed_section.log",
        benchmark:
            "benchmarks/amed_section/amed_section.tsv"
        threads: 1
        shell:
            "{params.cli} amed section --params {params.cfg} --predictors {input.predictors} "
            "--manifests {input.manifests} --out-dir results/studies/amed 2> {log}"

    SECTIONS.append("results/studies/amed/section.json")
