rule tiles_images:
    input:
        input_tables,
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
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "python -m quagga tiles --modality images --params {params.images:q} --out {output:q} 2> {log:q}"
