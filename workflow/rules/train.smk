rule train:
    input:
        f"{RESULTS}/{{dataset}}/tiles",
    output:
        f"{RESULTS}/{{dataset}}/models/vae.ckpt",
        f"{RESULTS}/{{dataset}}/models/metrics.csv",
    params:
        train=stage_params("train"),
        tiles=stage_params("tiles"),
        out=output_dir,
    log:
        f"{RESULTS}/logs/train/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{dataset}}.tsv"
    threads: workflow.cores
    resources:
        mem_mb=8000,
        # multi-GPU DDP under SLURM: the launcher, e.g. "srun --ntasks-per-node=4" (README); empty: one process
        mpi="",
    conda:
        ENV
    shell:
        "{resources.mpi} python -m quagga train --tiles {input} --params {params.train:q} --tiles-params {params.tiles:q} "
        "--out {params.out} 2> {log}"


rule encode:
    input:
        tiles=f"{RESULTS}/{{dataset}}/tiles",
        checkpoint=f"{RESULTS}/{{dataset}}/models/vae.ckpt",
    output:
        latents=f"{RESULTS}/{{dataset}}/latents.parquet",
        examples=f"{RESULTS}/{{dataset}}/reconstructions.npz",
    params:
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/encode/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/encode/{{dataset}}.tsv"
    threads: workflow.cores
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "python -m quagga encode --tiles {input.tiles} --checkpoint {input.checkpoint}"
        " --out {output.latents} --examples {output.examples} --seed {params.seed} 2> {log}"
