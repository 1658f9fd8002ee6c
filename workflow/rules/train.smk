rule train:
    input:
        f"{RESULTS}/{{dataset}}/tiles",
    output:
        f"{RESULTS}/{{dataset}}/models/vae.ckpt",
        f"{RESULTS}/{{dataset}}/models/metrics.csv",
    wildcard_constraints:
        dataset="|".join(TRAINED),
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
        "{resources.mpi} python -m quagga train --tiles {input:q} --params {params.train:q} --tiles-params {params.tiles:q} "
        "--out {params.out:q} 2> {log:q}"


rule encode:
    input:
        tiles=f"{RESULTS}/{{dataset}}/tiles",
        checkpoint=f"{RESULTS}/{{dataset}}/models/vae.ckpt",
    output:
        latents=f"{RESULTS}/{{dataset}}/latents.parquet",
        examples=f"{RESULTS}/{{dataset}}/reconstructions.npz",
    wildcard_constraints:
        dataset="|".join(TRAINED),
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
        "python -m quagga encode --tiles {input.tiles:q} --checkpoint {input.checkpoint:q}"
        " --out {output.latents:q} --examples {output.examples:q} --seed {params.seed:q} 2> {log:q}"
