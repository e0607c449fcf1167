# owned by the ni area; see docs/DEVELOPING.md "Workflow rules" and "Report sections".
# Natural Inference study, one job per part (`diffrepro ni study --part ...`), each writing a section.json:
#   ni_matrices                      traced matrices, heatmaps, marginal + equivalence tables (no model needed)
#   ni_search  (per ni.search.models)    tuned C vs baselines; results/samples/{model}/ni_tuned.{npz,json}
#   ni_sharpness (per ni.sharpness.models) sharpness family; results/samples/{model}/ni_sharp.{npz,json}
#   ni_cfg     (ni.cfg.model)        guidance scale × sampler on a class-conditional model
#   ni_file    (per ni.files.models × ni.files.matrices) a stored matrix replayed on a model after the node check;
#              results/samples/{model}/ni_file_{name}.{npz,json}
# The sweep variants ni_tuned / ni_sharp join EXTRA_SAMPLERS when every sweep model has them.

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

if NI_SEARCH_MODELS:

    rule ni_search:
        input:
            unpack(lambda wc: _ni_model_inputs(wc.model)),
        output:
            section="results/ni/search/{model}/section.json",
            tuned=expand("results/ni/search/{{model}}/ni_tuned_nfe{nfe:03d}.npz",
                         nfe=NI_CFG.get("search", {}).get("nfe", [])),
            npz="results/samples/{model}/ni_tuned.npz",
            manifest="results/samples/{model}/ni_tuned.json",
        wildcard_constraints:
            model="|".join(NI_SEARCH_MODELS),
        params:
            cli=DIFFREPRO,
            code=step_code("ni_study"),
            cfg=PARAMS,
            h=section_hash("seed", "ni", "sampling"),
            inputs=NI_MODEL_FLAGS,
        log:
            "logs/ni_search/{model}.log",
        benchmark:
            "benchmarks/ni_search/{model}.tsv"
        threads: 1
        shell:
            "{params.cli} ni study --params {params.cfg} --part search --model {wildcards.model} "
            "{params.inputs} --sweep-out {output.npz} --out-dir results/ni/search/{wildcards.model} --threads {threads} "
            "2> {log}"

    SECTIONS.extend(expand("results/ni/search/{model}/section.json", model=NI_SEARCH_MODELS))

if NI_SHARP_MODELS:

    rule ni_sharpness:
        input:
            unpack(lambda wc: _ni_model_inputs(wc.model)),
        output:
            section="results/ni/sharpness/{model}/section.json",
            npz="results/samples/{model}/ni_sharp.npz",
            manifest="results/samples/{model}/ni_sharp.json",
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
            "{params.inputs} --sweep-out {output.npz} --out-dir results/ni/sharpness/{wildcards.model} "
            "--threads {threads} 2> {log}"

    SECTIONS.extend(expand("results/ni/sharpness/{model}/section.json", model=NI_SHARP_MODELS))

if NI_CFG_MODEL:

    rule ni_cfg:
        input:
            unpack(lambda wc: _ni_model_inputs(NI_CFG_MODEL)),
            tuned=(
                [f"results/ni/search/{_ni_tuned_source()}/ni_tuned_nfe{NI_CFG['cfg'].get('nfe', 15):03d}.npz"]
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
            npz="results/samples/{model}/ni_file_{name}.npz",
            manifest="results/samples/{model}/ni_file_{name}.json",
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
            "{params.inputs} --sweep-out {output.npz} --out-dir results/ni/files/{wildcards.model}/{wildcards.name} "
            "--threads {threads} 2> {log}"

    SECTIONS.extend(expand("results/ni/files/{model}/{name}/section.json", model=NI_FILE_MODELS, name=NI_FILES))
    # scored like any sampler, for the sweep models that have them
    EXTRA_METRIC_FILES.extend(expand("results/metrics/{model}/ni_file_{name}.json",
                                     model=[m for m in NI_FILE_MODELS if m in SWEEP_MODELS], name=NI_FILES))

# Sweep variants: evaluated and aggregated like any sampler once every sweep model has the file; otherwise for the
# sweep models that have it.
for _variant, _models in (("ni_tuned", NI_SEARCH_MODELS), ("ni_sharp", NI_SHARP_MODELS)):
    if _models and set(SWEEP_MODELS) <= set(_models):
        EXTRA_SAMPLERS.append(_variant)
    else:
        EXTRA_METRIC_FILES.extend(f"results/metrics/{m}/{_variant}.json" for m in _models if m in SWEEP_MODELS)
