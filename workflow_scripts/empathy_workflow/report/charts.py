"""The report's two overview figures: similarity Pearson per method against the human ceiling,
and the headline EmPO metrics per model."""

from __future__ import annotations

from pathlib import Path

from empathy_workflow.report.format import flatten


def plot_similarity(by_testset: dict[str, list], ceilings: dict[str, dict], path: Path) -> None:
    from empathy_workflow.core.plots import new_figure, save_figure

    figure, axis = new_figure(7, 4)
    testsets = sorted(by_testset)
    methods = sorted({method for values in by_testset.values() for method, _ in values})
    width = 0.8 / max(1, len(methods))
    for index, method in enumerate(methods):
        values = [dict(by_testset[t]).get(method) for t in testsets]
        positions = [i + index * width for i in range(len(testsets))]
        axis.bar(positions, [v if v is not None else 0 for v in values], width, label=method)
    for i, testset in enumerate(testsets):
        ceiling = ceilings.get(testset, {}).get("expected_correlation")
        if ceiling is not None:
            axis.hlines(ceiling, i - width / 2, i + 0.8 - width / 2, colors="black", linestyles="dashed",
                        label="human ceiling" if i == 0 else None)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(testsets))], testsets)
    axis.set_ylabel("Pearson r with the gold score")
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.legend(fontsize=7)
    save_figure(figure, path)


def plot_empo(metrics: dict[str, dict], models: list[str], path: Path) -> None:
    from empathy_workflow.core.plots import new_figure, save_figure

    panels = [("diff_epitome", "mean", "diff-Epitome (lower better)"),
              ("bertscore", "f1", "BERTScore F1"),
              ("diversity", "distinct_2", "distinct-2"),
              ("lm_eval", None, "lm-eval accuracy")]
    figure, axes = new_figure(11, 3)
    figure.clf()
    axes = figure.subplots(1, len(panels))
    for axis, (group, key, title) in zip(axes, panels):
        values, errors = [], []
        for model in models:
            section = metrics[model].get(group, {}) or {}
            if key is None:  # lm_eval: first task
                numbers = [v for v in flatten(section).values()]
                value = numbers[0] if numbers else None
            else:
                value = section.get(key)
            value = value if isinstance(value, (int, float)) else None
            values.append(value if value is not None else 0.0)
            interval = (section.get("ci") or {}).get(key) if key else None
            errors.append(interval)
        axis.bar(models, values, color="#4c72b0")
        for index, interval in enumerate(errors):
            if isinstance(interval, list) and len(interval) == 2:
                axis.errorbar(index, values[index], yerr=[[values[index] - interval[0]], [interval[1] - values[index]]],
                              color="black", capsize=3)
        axis.set_title(title, fontsize=9)
        axis.tick_params(axis="x", labelrotation=30, labelsize=8)
    save_figure(figure, path)
