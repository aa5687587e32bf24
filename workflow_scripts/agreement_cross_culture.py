"""Rule script: not implemented yet (a later issue fills this stage)."""

raise NotImplementedError("workflow_scripts/agreement_cross_culture.py is not implemented yet")
