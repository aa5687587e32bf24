"""results/report/summary.md: the page and the rule's entry point."""

from __future__ import annotations

from pathlib import Path

from empathy_workflow.report.sections import (
    agreement_section,
    data_section,
    empo_section,
    human_ceiling,
    human_eval_section,
    similarity_section,
)


def build_summary(inputs: dict[str, list[str]], config: dict, output: Path) -> str:
    report_dir = output.parent
    plots = report_dir / "plots"
    paths = {key: [Path(p) for p in values] for key, values in inputs.items()}
    ceilings = human_ceiling(paths["agreement"])
    sections = [
        "# Empathy in language models: results",
        "",
        f"Configuration: seed {config.get('seed')}; models "
        + ", ".join(f"`{name}` = {entry['source']}" for name, entry in config.get("models", {}).items())
        + ". Numbers below are read from the result files under `results/`; rerun `snakemake` to refresh.",
        "",
        data_section(paths["splits"]),
        "",
        agreement_section(paths["agreement"], paths["aggregate"][0], paths["cross_culture"][0], report_dir),
        "",
        similarity_section(paths["similarity"], ceilings, report_dir, plots / "similarity_pearson.png"),
        "",
        empo_section(paths["empo"], paths["significance"][0], paths["curves"], paths["pair_stats"],
                     paths["epitome"], report_dir, plots / "empo_metrics.png",
                     mapping=config.get("empo", {}).get("pairs", {}).get("emotion_mapping", "plutchik"),
                     epitome_quality=Path(paths["epitome_quality"][0]) if paths.get("epitome_quality") else None),
        "",
        human_eval_section(paths.get("human_eval", []), report_dir),
        "",
    ]
    return "\n".join(sections).rstrip() + "\n"


def main(snakemake) -> None:
    from empathy_workflow.core.io import write_text

    inputs = {key: list(snakemake.input[key]) if not isinstance(snakemake.input[key], str)
              else [snakemake.input[key]] for key in snakemake.input.keys()}
    output = Path(snakemake.output.summary)
    write_text(output, build_summary(inputs, snakemake.params.config, output))
