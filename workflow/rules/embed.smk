rule embed:
    input:
        latents=f"{RESULTS}/{{dataset}}/latents.parquet",
        tiles=f"{RESULTS}/{{dataset}}/tiles",
    output:
        map2d=f"{RESULTS}/{{dataset}}/models/umap_2d.pt",
        embedding=f"{RESULTS}/{{dataset}}/embedding.parquet",
    params:
        embed=stage_params("embed"),
        models=output_dir,
    log:
        f"{RESULTS}/logs/embed/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/embed/{{dataset}}.tsv"
    threads: workflow.cores
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "python -m quagga embed --latents {input.latents:q} --tiles {input.tiles:q} --params {params.embed:q}"
        " --out {output.embedding:q} --models-dir {params.models:q} 2> {log:q}"


rule cluster:
    input:
        f"{RESULTS}/{{dataset}}/embedding.parquet",
    output:
        f"{RESULTS}/{{dataset}}/clusters.parquet",
    params:
        cluster=stage_params("cluster"),
    log:
        f"{RESULTS}/logs/cluster/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cluster/{{dataset}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "python -m quagga cluster --embedding {input:q} --params {params.cluster:q} --out {output:q} 2> {log:q}"
