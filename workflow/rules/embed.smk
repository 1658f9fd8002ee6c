rule embed:
    input:
        latents=f"{RESULTS}/{{dataset}}/latents.parquet",
        tiles=f"{RESULTS}/{{dataset}}/tiles",
    output:
        map2d=f"{RESULTS}/{{dataset}}/models/umap_2d.pt",
        embedding=f"{RESULTS}/{{dataset}}/embedding.parquet",
        morphology=f"{RESULTS}/{{dataset}}/models/morphology.json",
    wildcard_constraints:
        dataset="|".join(TRAINED),
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
        " --out {output.embedding:q} --models-dir {params.models:q} --threads {threads} 2> {log:q}"


rule cluster:
    input:
        f"{RESULTS}/{{dataset}}/embedding.parquet",
    output:
        f"{RESULTS}/{{dataset}}/clusters.parquet",
    wildcard_constraints:
        dataset="|".join(TRAINED),
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


# A projected dataset (datasets.<name>.reference): encoded, mapped and clustered with the reference's models.
rule project:
    input:
        tiles=f"{RESULTS}/{{dataset}}/tiles",
        reference=reference_models,
    output:
        latents=f"{RESULTS}/{{dataset}}/latents.parquet",
        examples=f"{RESULTS}/{{dataset}}/reconstructions.npz",
        embedding=f"{RESULTS}/{{dataset}}/embedding.parquet",
        clusters=f"{RESULTS}/{{dataset}}/clusters.parquet",
        summary=f"{RESULTS}/{{dataset}}/projection.json",
    wildcard_constraints:
        dataset="|".join(PROJECTED),
    params:
        reference=reference,
        seed=config["seed"],
        out=output_dir,
    log:
        f"{RESULTS}/logs/project/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/project/{{dataset}}.tsv"
    threads: workflow.cores
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "python -m quagga project --reference {params.reference:q} --tiles {input.tiles:q} --out {params.out:q}"
        " --dataset {wildcards.dataset:q} --seed {params.seed:q} 2> {log:q}"
