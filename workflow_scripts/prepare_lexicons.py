"""Rule prepare_lexicons: NRC VAD and emotion-intensity lexicons -> vad.csv, intensity.csv."""

from empathy_workflow.core import dataset_sources, io, runtime
from empathy_workflow.empo import lexicons

logger = runtime.start(snakemake)
sources = snakemake.params.sources
vad = lexicons.load_vad(dataset_sources.fetch(sources["vad"]))
intensity = lexicons.load_intensity(dataset_sources.fetch(sources["intensity"]))
logger.info("lexicons: %d VAD words, %d intensity entries", len(vad), len(intensity))
io.write_csv(snakemake.output.vad, vad)
io.write_csv(snakemake.output.intensity, intensity)
