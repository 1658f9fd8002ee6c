rule tiles_images:
    input:
        tables=input_tables,
        settings=f"{RESULTS}/{{dataset}}/settings.json",
    output:
        directory(f"{RESULTS}/{{dataset}}/tiles"),
    wildcard_constraints:
        dataset="|".join(IMAGES),
    params:
        images=stage_params("tiles"),
    log:
        f"{RESULTS}/logs/tiles_images/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tiles_images/{{dataset}}.tsv"
    threads: workflow.cores
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "python -m quagga tiles --modality images --params {params.images:q} --settings {input.settings:q}"
        " --threads {threads} --out {output:q} 2> {log:q}"
