# A workflow whose only job fails: the SLURM profile must report the failure, not hang.
rule all:
    input:
        "failing.out",


rule fail:
    output:
        "failing.out",
    log:
        "logs/fail.log",
    shell:
        "echo about to fail > {log}; exit 3"
