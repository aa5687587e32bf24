"""Rule script: not implemented yet (a later issue fills this stage)."""

raise NotImplementedError("workflow_scripts/empo_emotion_mapping.py is not implemented yet")
