"""Rule script: every analysed dataset's agreement side by side, aspect by aspect (English vs
Urdu when both have per-annotator ratings), with the alpha-with-interval plot across datasets."""

from empathy_workflow import agreement, io, plots, runtime

logger = runtime.start(snakemake)  # noqa: F821 (injected by Snakemake)
names = list(snakemake.params.datasets)  # noqa: F821
results = {name: io.read_json(path) for name, path in zip(names, snakemake.input)}  # noqa: F821
summary = agreement.cross_culture(results, dict(snakemake.params.languages))  # noqa: F821
if summary["note"]:
    logger.info(summary["note"])
entries = [(aspect, name, results[name][aspect])
           for aspect in summary["aspects"] for name in summary["aspects"][aspect]]
agreement.plot_alpha(entries, snakemake.output.plot, plots.save_figure, plots.new_figure,  # noqa: F821
                     "Krippendorff's alpha per aspect and dataset")
io.write_text(snakemake.output.table, agreement.cross_culture_markdown(summary))  # noqa: F821
io.write_json(snakemake.output.json, summary)  # noqa: F821
