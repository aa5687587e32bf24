"""Rule script: not implemented yet (a later issue fills this stage)."""

raise NotImplementedError("workflow_scripts/agreement_aggregate_scores.py is not implemented yet")
