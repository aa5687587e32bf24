"""Rule prepare_lexicons: NRC VAD and emotion-intensity lexicons -> vad.csv, intensity.csv."""

from empathy_workflow import data, io, runtime

logger = runtime.start(snakemake)
sources = snakemake.params.sources
vad = data.load_vad(data.fetch(sources["vad"]))
intensity = data.load_intensity(data.fetch(sources["intensity"]))
logger.info("lexicons: %d VAD words, %d intensity entries", len(vad), len(intensity))
io.write_csv(snakemake.output.vad, vad)
io.write_csv(snakemake.output.intensity, intensity)
