rule evaluate:
    input:
        tiles=f"{RESULTS}/{{dataset}}/tiles",
        clusters=f"{RESULTS}/{{dataset}}/clusters.parquet",
        latents=f"{RESULTS}/{{dataset}}/latents.parquet",
    output:
        f"{RESULTS}/{{dataset}}/metrics.json",
    params:
        evaluate=stage_params("evaluate"),
    log:
        f"{RESULTS}/logs/evaluate/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{dataset}}.tsv"
    conda:
        ENV
    shell:
        "python -m quagga evaluate --tiles {input.tiles} --clusters {input.clusters} --latents {input.latents}"
        " --params {params.evaluate:q} --out {output} 2> {log}"


rule report:
    input:
        tiles=f"{RESULTS}/{{dataset}}/tiles",
        latents=f"{RESULTS}/{{dataset}}/latents.parquet",
        examples=f"{RESULTS}/{{dataset}}/reconstructions.npz",
        embedding=f"{RESULTS}/{{dataset}}/embedding.parquet",
        clusters=f"{RESULTS}/{{dataset}}/clusters.parquet",
        metrics=f"{RESULTS}/{{dataset}}/metrics.json",
        curve=f"{RESULTS}/{{dataset}}/models/metrics.csv",
    output:
        report(
            f"{RESULTS}/{{dataset}}/report/index.html",
            caption="../report/dataset.rst",
            category="Datasets",
            labels={"dataset": "{dataset}"},
        ),
    params:
        report=stage_params("report"),
        info=run_info,
        sources=source_root,
        results=dataset_dir,
        out=output_dir,
    log:
        f"{RESULTS}/logs/report/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/{{dataset}}.tsv"
    conda:
        ENV
    shell:
        "python -m quagga report --dataset {wildcards.dataset} --results {params.results}"
        " --params {params.report:q} --run-info {params.info:q} --source-root={params.sources:q}"
        " --out {params.out} 2> {log}"
