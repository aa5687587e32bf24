"""Library code behind the workflow's rules: one module per concern.

The scripts in workflow_scripts/ are thin: each reads `snakemake.input/params/output`, calls
into this package, and writes its outputs. Tests import the package directly.
"""
