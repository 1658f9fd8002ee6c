rule tiles_audio:
    input:
        tables=input_tables,
        settings=f"{RESULTS}/{{dataset}}/settings.json",
    output:
        directory(f"{RESULTS}/{{dataset}}/tiles"),
    wildcard_constraints:
        dataset="|".join(AUDIO),
    params:
        audio=stage_params("tiles"),
    log:
        f"{RESULTS}/logs/tiles_audio/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tiles_audio/{{dataset}}.tsv"
    threads: workflow.cores
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "python -m quagga tiles --modality audio --params {params.audio:q} --settings {input.settings:q}"
        " --threads {threads} --out {output:q} 2> {log:q}"
