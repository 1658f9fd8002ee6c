# Settings found from the data: every `auto` value of a dataset's audio / images section, resolved once
# (before tiling, for all shards alike) and recorded with how it was found.
rule settings:
    input:
        input_tables,
        reference_settings,
    output:
        f"{RESULTS}/{{dataset}}/settings.json",
    params:
        section=stage_params("tiles"),
        modality=modality,
        reference=reference,
        explicit=explicit_settings,
    log:
        f"{RESULTS}/logs/settings/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/settings/{{dataset}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        ENV
    shell:
        "python -m quagga settings --modality {params.modality:q} --params {params.section:q}"
        " --reference={params.reference:q} --explicit={params.explicit:q} --out {output:q} 2> {log:q}"


# Sharded tiling (datasets with shards > 1): one job per contiguous block of the recordings / images,
# then one job concatenates the shard stores (quagga merge-tiles) into the same store one job makes.
rule tiles_shard:
    input:
        tables=input_tables,
        settings=f"{RESULTS}/{{dataset}}/settings.json",
    output:
        temp(directory(f"{RESULTS}/{{dataset}}/tiles.shards/{{shard}}")),
    wildcard_constraints:
        dataset="|".join(SHARDED),
        shard=r"\d+",
    params:
        section=stage_params("tiles"),
        modality=modality,
        shards=lambda wildcards: SHARDS[wildcards.dataset],
    log:
        f"{RESULTS}/logs/tiles_shard/{{dataset}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tiles_shard/{{dataset}}/{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "python -m quagga tiles --modality {params.modality:q} --params {params.section:q}"
        " --settings {input.settings:q} --shard {wildcards.shard:q}/{params.shards:q} --out {output:q} 2> {log:q}"


rule tiles_merge:
    input:
        shard_stores,
    output:
        directory(f"{RESULTS}/{{dataset}}/tiles"),
    wildcard_constraints:
        dataset="|".join(SHARDED),
    log:
        f"{RESULTS}/logs/tiles_merge/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tiles_merge/{{dataset}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        ENV
    shell:
        "python -m quagga merge-tiles --out {output:q} {input:q} 2> {log:q}"
