# owned by the sample area; see docs/DEVELOPING.md "Workflow rules".
# One job per (model, sampler) runs every grid × NFE × seed cell (start-up amortised), or with sampling.jobs: per_model
# one job per model runs every sampler of sampling.samplers (one process start-up and one GITS teacher per model); one
# reference job per model. The coefficient-matrix samplers (ni_tuned, ni_sharp, ni_file_<name>) run one job each, on
# the matrices ni.smk fits (their own grid and NFE), so they start as soon as their matrices exist.
# Outputs are read by metrics.smk (`evaluate`): results/samples/{model}/{sampler}.{npz,json} and _reference.{npz,json}.

SAMPLE_FILES = expand("results/samples/{model}/{sampler}.npz", model=SWEEP_MODELS, sampler=SAMPLERS)
REFERENCE_FILES = expand("results/samples/{model}/_reference.npz", model=SWEEP_MODELS)


wildcard_constraints:
    sampler="|".join(SAMPLERS + MATRIX_SWEEP_SAMPLERS),



rule sample:
    input:
        model="results/models/{model}/model.pt",
        # AMED samplers: the model's trained predictors (amed.smk); none for every other sampler
        amed=lambda wc: amed_predictor_files(wc.model, wc.sampler),
        # coefficient-matrix samplers: the fitted or stored matrices; none for every other sampler
        matrices=matrix_sampler_inputs,
    output:
        npz="results/samples/{model}/{sampler}.npz",
        manifest="results/samples/{model}/{sampler}.json",
    params:
        cli=DIFFREPRO,
        code=step_code("sample"),
        cfg=PARAMS,
        h=section_hash("seed", "runtime", "sampling"),
        samplers=lambda wc: wc.sampler,
        amed=lambda wc, input: " ".join(f"--amed-predictor {p}" for p in input.amed),
        matrices=lambda wc: " ".join(f"--matrix {wc.sampler}={p}" for p in ni_matrix_files(wc.model, wc.sampler)),
    log:
        "logs/sample/{model}/{sampler}.log",
    benchmark:
        "benchmarks/sample/{model}/{sampler}.tsv"
    threads: 1
    shell:
        "{params.cli} sample --params {params.cfg} --model {wildcards.model} --sampler {params.samplers} "
        "--checkpoint {input.model} --out {output.npz} {params.amed} {params.matrices} --threads {threads} --no-progress "
        "2> {log}"


if PER_MODEL_JOBS:

    # the same step over every sampler of one model; ruleorder makes it the producer of those files
    use rule sample as sample_model with:
        input:
            model="results/models/{model}/model.pt",
            amed=lambda wc: [p for s in SAMPLERS for p in amed_predictor_files(wc.model, s)],
            matrices=[],
        output:
            npz=expand("results/samples/{{model}}/{sampler}.npz", sampler=SAMPLERS),
            manifest=expand("results/samples/{{model}}/{sampler}.json", sampler=SAMPLERS),
        params:
            samplers=" ".join(SAMPLERS),
            matrices="",
        log:
            "logs/sample/{model}/all_samplers.log",
        benchmark:
            "benchmarks/sample/{model}/all_samplers.tsv"
        priority: 5  # the longest sweep jobs start first

    ruleorder: sample_model > sample


rule reference:
    input:
        model="results/models/{model}/model.pt",
    output:
        npz="results/samples/{model}/_reference.npz",
        manifest="results/samples/{model}/_reference.json",
    params:
        cli=DIFFREPRO,
        code=step_code("sample"),
        cfg=PARAMS,
        h=section_hash("seed", "runtime", "sampling"),
    log:
        "logs/reference/{model}.log",
    benchmark:
        "benchmarks/reference/{model}.tsv"
    threads: 1
    shell:
        "{params.cli} sample --params {params.cfg} --model {wildcards.model} --reference "
        "--checkpoint {input.model} --out {output.npz} --threads {threads} --no-progress 2> {log}"
