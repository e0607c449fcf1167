# owned by the ni area; see docs/DEVELOPING.md "Workflow rules" and "Report sections".
# Natural Inference study, one job per part (`diffrepro ni study --part ...`), each writing a section.json:
#   ni_matrices                      traced matrices, heatmaps, marginal + equivalence tables (no model needed)
#   ni_search  (per ni.search.models)    the fitted ni_tuned matrices vs the baselines on held-out noises
#   ni_sharpness (per ni.sharpness.models) sharpness family
#   ni_cfg     (ni.cfg.model)        guidance scale × sampler on a class-conditional model
#   ni_file    (per ni.files.models × ni.files.matrices) a stored matrix checked against the model's schedule
# Fitting a matrix is training, upstream of the sweep: ni_fit (one job per model × ni_tuned/ni_sharp × NFE) writes
# results/ni/fit/{model}/{sampler}_nfeNNN.{npz,json}; sample.smk runs those matrices (and ni.files' stored ones) as the
# registry's coefficient-matrix samplers ni_tuned / ni_sharp / ni_file_<name> (ni_matrix_files), evaluated and
# aggregated like any sampler.

# explicit inputs of the parts that run on a model: its file, its training data and, when declared, its classifier
NI_MODEL_FLAGS = lambda wildcards, input: (f"--checkpoint {input.model} --data {input.data}"
                                           + (f" --classifier {input.classifier}" if input.get("classifier") else ""))

rule ni_matrices:
    output:
        section="results/ni/matrices/section.json",
    params:
        cli=DIFFREPRO,
        code=step_code("ni_study"),
        cfg=PARAMS,
        h=section_hash("seed", "ni"),
    log:
        "logs/ni_matrices/ni_matrices.log",
    benchmark:
        "benchmarks/ni_matrices/ni_matrices.tsv"
    threads: 1
    shell:
        "{params.cli} ni study --params {params.cfg} --part matrices --out-dir results/ni/matrices "
        "--threads {threads} 2> {log}"


SECTIONS.append("results/ni/matrices/section.json")

if NI_SEARCH_MODELS or NI_SHARP_MODELS:

    rule ni_fit:
        input:
            model="results/models/{model}/model.pt",
        output:
            matrix="results/ni/fit/{model}/{sampler}_nfe{nfe}.npz",
            record="results/ni/fit/{model}/{sampler}_nfe{nfe}.json",
        wildcard_constraints:
            model="|".join(dict.fromkeys(NI_SEARCH_MODELS + NI_SHARP_MODELS)),
            sampler="ni_tuned|ni_sharp",
            nfe="[0-9]{3}",
        params:
            cli=DIFFREPRO,
            code=step_code("ni_fit"),
            cfg=PARAMS,
            h=ni_fit_hash,
        log:
            "logs/ni_fit/{model}/{sampler}_nfe{nfe}.log",
        benchmark:
            "benchmarks/ni_fit/{model}/{sampler}_nfe{nfe}.tsv"
        threads: 1
        priority: 5  # the sweep's matrix samplers wait for it
        shell:
            "{params.cli} ni fit --params {params.cfg} --model {wildcards.model} --sampler {wildcards.sampler} "
            "--nfe {wildcards.nfe} --checkpoint {input.model} --out {output.matrix} --threads {threads} 2> {log}"

if NI_SEARCH_MODELS:

    rule ni_search:
        input:
            unpack(lambda wc: _ni_model_inputs(wc.model)),
            fitted=lambda wc: ni_matrix_files(wc.model, "ni_tuned"),
            records=lambda wc: [p.replace(".npz", ".json") for p in ni_matrix_files(wc.model, "ni_tuned")],
        output:
            section="results/ni/search/{model}/section.json",
        wildcard_constraints:
            model="|".join(NI_SEARCH_MODELS),
        params:
            cli=DIFFREPRO,
            code=step_code("ni_study"),
            cfg=PARAMS,
            h=section_hash("seed", "ni", "sampling"),
            inputs=NI_MODEL_FLAGS,
            fitted=lambda wildcards, input: " ".join(f"--fitted {p}" for p in input.fitted),
        log:
            "logs/ni_search/{model}.log",
        benchmark:
            "benchmarks/ni_search/{model}.tsv"
        threads: 1
        shell:
            "{params.cli} ni study --params {params.cfg} --part search --model {wildcards.model} "
            "{params.inputs} {params.fitted} --out-dir results/ni/search/{wildcards.model} --threads {threads} "
            "2> {log}"

    SECTIONS.extend(expand("results/ni/search/{model}/section.json", model=NI_SEARCH_MODELS))

if NI_SHARP_MODELS:

    rule ni_sharpness:
        input:
            unpack(lambda wc: _ni_model_inputs(wc.model)),
        output:
            section="results/ni/sharpness/{model}/section.json",
        wildcard_constraints:
            model="|".join(NI_SHARP_MODELS),
        params:
            cli=DIFFREPRO,
            code=step_code("ni_study"),
            cfg=PARAMS,
            h=section_hash("seed", "ni", "sampling"),
            inputs=NI_MODEL_FLAGS,
        log:
            "logs/ni_sharpness/{model}.log",
        benchmark:
            "benchmarks/ni_sharpness/{model}.tsv"
        threads: 1
        shell:
            "{params.cli} ni study --params {params.cfg} --part sharpness --model {wildcards.model} "
            "{params.inputs} --out-dir results/ni/sharpness/{wildcards.model} --threads {threads} 2> {log}"

    SECTIONS.extend(expand("results/ni/sharpness/{model}/section.json", model=NI_SHARP_MODELS))

if NI_CFG_MODEL:

    rule ni_cfg:
        input:
            unpack(lambda wc: _ni_model_inputs(NI_CFG_MODEL)),
            tuned=(
                [f"results/ni/fit/{_ni_tuned_source()}/ni_tuned_nfe{NI_CFG['cfg'].get('nfe', 15):03d}.npz"]
                if "ni_tuned" in NI_CFG["cfg"].get("samplers", []) and _ni_tuned_source()
                else []
            ),
        output:
            section="results/ni/cfg/section.json",
        params:
            cli=DIFFREPRO,
            code=step_code("ni_study"),
            cfg=PARAMS,
            h=section_hash("seed", "ni"),
            inputs=NI_MODEL_FLAGS,
            tuned=lambda wildcards, input: f"--tuned {input.tuned}" if input.get("tuned") else "",
        log:
            "logs/ni_cfg/ni_cfg.log",
        benchmark:
            "benchmarks/ni_cfg/ni_cfg.tsv"
        threads: 1
        shell:
            "{params.cli} ni study --params {params.cfg} --part cfg {params.inputs} {params.tuned} --out-dir results/ni/cfg "
            "--threads {threads} 2> {log}"

    SECTIONS.append("results/ni/cfg/section.json")

if NI_FILE_MODELS:

    rule ni_file:
        input:
            unpack(lambda wc: _ni_model_inputs(wc.model)),
            # tracked when present; when absent the job stops at once with an error naming the file (a dry run of a
            # fresh checkout still lists the DAG before the published files are copied in)
            matrix=lambda wc: [NI_FILES[wc.name]] if Path(NI_FILES[wc.name]).exists() else [],
        output:
            section="results/ni/files/{model}/{name}/section.json",
        wildcard_constraints:
            model="|".join(NI_FILE_MODELS),
            name="|".join(NI_FILES),
        params:
            cli=DIFFREPRO,
            code=step_code("ni_study"),
            cfg=PARAMS,
            h=section_hash("seed", "ni", "sampling"),
            inputs=NI_MODEL_FLAGS,
        log:
            "logs/ni_file/{model}/{name}.log",
        benchmark:
            "benchmarks/ni_file/{model}/{name}.tsv"
        threads: 1
        shell:
            "{params.cli} ni study --params {params.cfg} --part file --model {wildcards.model} --name {wildcards.name} "
            "{params.inputs} --out-dir results/ni/files/{wildcards.model}/{wildcards.name} --threads {threads} "
            "2> {log}"

    SECTIONS.extend(expand("results/ni/files/{model}/{name}/section.json", model=NI_FILE_MODELS, name=NI_FILES))

# The coefficient-matrix samplers join the sweep: aggregated like any sampler when every sweep model runs them, else
# scored for the sweep models that do.
for _variant in MATRIX_SWEEP_SAMPLERS:
    _models = [m for m in SWEEP_MODELS if ni_matrix_files(m, _variant)]
    if _models == SWEEP_MODELS:
        EXTRA_SAMPLERS.append(_variant)
    else:
        EXTRA_METRIC_FILES.extend(f"results/metrics/{m}/{_variant}.json" for m in _models)
