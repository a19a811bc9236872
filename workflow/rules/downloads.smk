# Remote files (config key `downloads`), each to resources/downloads/<name>: fetched on the submitting host
# (a local rule: compute nodes often have no internet), resumed when cut, taken only once their sha256 matches.
# The url is not a param: a mirror serves the same file, so pointing an entry at one reruns nothing.


rule download:
    output:
        out=f"{DOWNLOADS}/{{name}}",
    log:
        f"results/logs/download-{{name}}.log",
    wildcard_constraints:
        name=names_regex(list(config["downloads"])),
    localrule: True
    conda:
        ENV
    params:
        name=lambda wildcards: wildcards.name,
        sha256=lambda wildcards: config["downloads"][wildcards.name]["sha256"],
        size=lambda wildcards: config["downloads"][wildcards.name].get("size") or 0,
        code_version=code("download.py"),
    script:
        "../scripts/download.py"
