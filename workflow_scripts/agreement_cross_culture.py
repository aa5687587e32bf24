"""Rule script: every analysed dataset's agreement side by side, aspect by aspect (English vs
Urdu, the English variants under the Urdu aspect they correspond to, English-only aspects apart),
with the alpha-with-interval plot across datasets."""

from empathy_workflow.agreement import cross_culture, figures
from empathy_workflow.core import io, runtime

logger = runtime.start(snakemake)  # noqa: F821 (injected by Snakemake)
names = list(snakemake.params.datasets)  # noqa: F821
results = {name: io.read_json(path) for name, path in zip(names, snakemake.input)}  # noqa: F821
summary = cross_culture.cross_culture(results, dict(snakemake.params.languages),  # noqa: F821
                                      dict(snakemake.params.compare_as))  # noqa: F821
for note in summary["notes"]:
    logger.info(note)
figures.plot_alpha(cross_culture.plot_entries(summary, results), snakemake.output.plot,  # noqa: F821
                     "Krippendorff's alpha per aspect and dataset")
io.write_text(snakemake.output.table, cross_culture.cross_culture_markdown(summary))  # noqa: F821
io.write_json(snakemake.output.json, summary)  # noqa: F821
