"""Rule empo_emotion_mapping: the emotion -> opposite-emotion table the preference pairs use.
`plutchik` (or a CSV path) is validated and copied; `valence` is computed from the training
dialogues and the NRC VAD lexicon (see empathy_workflow.preference.valence_mapping)."""

import pandas as pd

from empathy_workflow.core import io, runtime
from empathy_workflow.empo import dialogues, emotions, lexicons

logger = runtime.start(snakemake)
name = snakemake.params.mapping
if name == "valence":
    records = dialogues.read_dialogues(snakemake.input.train)
    frame = emotions.valence_mapping(records, lexicons.read_vad(snakemake.input.vad))
    logger.info("valence mapping from %d training dialogues", len(records))
else:
    # `mapping` is a list input (empty for valence): the shipped plutchik.csv or the user's CSV
    source = snakemake.input.mapping[0] if len(snakemake.input.mapping) else name
    mapping = emotions.read_mapping(source)
    frame = pd.DataFrame({"emotion": list(mapping), "opposite": list(mapping.values())})
    logger.info("mapping %r read from %s", name, source)
for row in frame.itertuples():
    logger.info("  %s -> %s", row.emotion, row.opposite)
io.write_csv(snakemake.output.mapping, frame)
