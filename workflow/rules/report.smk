rule evaluate:
    input:
        tiles=f"{RESULTS}/{{dataset}}/tiles",
        clusters=f"{RESULTS}/{{dataset}}/clusters.parquet",
        latents=f"{RESULTS}/{{dataset}}/latents.parquet",
        embedding=f"{RESULTS}/{{dataset}}/embedding.parquet",
        corrections=labels_corrections,
    output:
        metrics=f"{RESULTS}/{{dataset}}/metrics.json",
        predicted=f"{RESULTS}/{{dataset}}/predicted_labels.csv",
    params:
        evaluate=stage_params("evaluate"),
    log:
        f"{RESULTS}/logs/evaluate/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{dataset}}.tsv"
    threads: workflow.cores
    conda:
        ENV
    shell:
        "python -m quagga evaluate --tiles {input.tiles:q} --clusters {input.clusters:q} --latents {input.latents:q}"
        " --embedding {input.embedding:q} --corrections {input.corrections:q} --params {params.evaluate:q}"
        " --out {output.metrics:q} --predicted {output.predicted:q} --threads {threads} 2> {log:q}"


rule report:
    input:
        tiles=f"{RESULTS}/{{dataset}}/tiles",
        latents=f"{RESULTS}/{{dataset}}/latents.parquet",
        examples=f"{RESULTS}/{{dataset}}/reconstructions.npz",
        embedding=f"{RESULTS}/{{dataset}}/embedding.parquet",
        clusters=f"{RESULTS}/{{dataset}}/clusters.parquet",
        metrics=f"{RESULTS}/{{dataset}}/metrics.json",
        predicted=f"{RESULTS}/{{dataset}}/predicted_labels.csv",
        curve=training_curve,
        reference=report_reference,
        metadata=metadata_table,
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
        reference=reference,
        metadata=metadata_path,
    log:
        f"{RESULTS}/logs/report/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/{{dataset}}.tsv"
    threads: workflow.cores
    conda:
        ENV
    shell:
        "python -m quagga report --dataset {wildcards.dataset:q} --results {params.results:q}"
        " --params {params.report:q} --run-info {params.info:q} --source-root={params.sources:q}"
        " --out {params.out:q} --threads {threads}"
        " --reference={params.reference:q} --metadata={params.metadata:q} 2> {log:q}"
