"""Rule script: not implemented yet (a later issue fills this stage)."""

raise NotImplementedError("workflow_scripts/epitome_classifier.py is not implemented yet")
