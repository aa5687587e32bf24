"""Rule script: not implemented yet (a later issue fills this stage)."""

raise NotImplementedError("workflow_scripts/similarity_train_llm.py is not implemented yet")
