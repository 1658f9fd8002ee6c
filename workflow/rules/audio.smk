rule tiles_audio:
    input:
        input_tables,
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
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "python -m quagga tiles --modality audio --params {params.audio:q} --out {output:q} 2> {log:q}"
