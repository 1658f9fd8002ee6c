rule demo_data:
    output:
        f"{DEMO}/audio/selections.txt",
        f"{DEMO}/images/particles/labels.csv",
        f"{DEMO}/images/fields/boxes.csv",
        f"{DEMO}/audio/metadata.csv",
        f"{DEMO}/images/particles/metadata.csv",
        f"{DEMO}/images/particles-core-b/labels.csv",
        f"{DEMO}/images/particles-core-b/metadata.csv",
    params:
        seed=config["seed"],
        out=demo_root,
    log:
        f"{RESULTS}/logs/demo_data/demo.log",
    benchmark:
        f"{RESULTS}/benchmarks/demo_data/demo.tsv"
    conda:
        ENV
    shell:
        "python -m quagga demo-data --out {params.out:q} --seed {params.seed:q} 2> {log:q}"
