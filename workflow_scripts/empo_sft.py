"""Rule script: not implemented yet (a later issue fills this stage)."""

raise NotImplementedError("workflow_scripts/empo_sft.py is not implemented yet")
