"""Rule empo_emotion_mapping: the emotion -> opposite-emotion table the preference pairs use.
`plutchik` (or a CSV path) is validated and copied; `valence` is computed from the training
dialogues and the NRC VAD lexicon (see empathy_workflow.preference.valence_mapping)."""

import pandas as pd

from empathy_workflow import io, preference, runtime

logger = runtime.start(snakemake)
name = snakemake.params.mapping
if name == "valence":
    records = preference.read_dialogues(snakemake.input.train)
    frame = preference.valence_mapping(records, preference.read_vad(snakemake.input.vad))
    logger.info("valence mapping from %d training dialogues", len(records))
else:
    mapping = preference.read_mapping(snakemake.input.mapping)
    frame = pd.DataFrame({"emotion": list(mapping), "opposite": list(mapping.values())})
    logger.info("mapping %r read from %s", name, snakemake.input.mapping)
for row in frame.itertuples():
    logger.info("  %s -> %s", row.emotion, row.opposite)
io.write_csv(snakemake.output.mapping, frame)
