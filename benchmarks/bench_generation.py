"""Batched generation against one prompt at a time, on the same ED prompts and the same policy.

    python benchmarks/bench_generation.py --model results/models/policy [--prompts 32]
        [--batch-sizes 8 16 32] [--max-new-tokens 48] [--threads 2] [--stage-run DIR]

Both paths use empathy_workflow.generation (greedy, KV cache); one-at-a-time is batch size 1 with
no padding, which is what the EmPO code's per-prompt text-generation pipeline call amounts to.
Checks that every batch size gives the same texts as one-at-a-time, then writes
benchmarks/generation.md. With --stage-run, the Snakemake benchmark files of a finished run in
DIR (results/benchmarks/empo/generate_*.tsv, results/benchmarks/evaluation/lm_eval_*.tsv) are
tabulated too: the evaluation stage's wall-clock times.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ed_prompts(n: int, seed: int) -> list[list[dict]]:
    """`n` prompts from the shipped ED validation CSV, built as the workflow builds them."""
    import importlib.util

    from empathy_workflow.empo import dialogues

    # the tests' reader of the shipped release CSV (tests/empo_fixtures.py), loaded by path
    spec = importlib.util.spec_from_file_location("empo_fixtures", REPO / "tests" / "empo_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    ed_conversations = fixtures.ed_conversations

    records = dialogues.usable_conversations(ed_conversations())
    chosen = dialogues.select_conversations(records, n, seed, salt="bench")
    return [dialogues.prompt_messages(record) for record in chosen]


def timed(function):
    """(result, wall seconds, CPU seconds of this process): on shared cores the CPU time is the
    steadier measure of the work done; the wall time is what a user waits."""
    started, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - started, time.process_time() - cpu


SECTION = "## Batched against one prompt at a time"


def write_section(path: Path, lines: list[str]) -> None:
    """Replace this benchmark's section of the file (up to the next "## " heading), keep the rest."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Generation benchmarks\n\n"
    new = "\n".join(lines) + "\n"
    if SECTION in text:
        start = text.index(SECTION)
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + new + ("\n" + text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + new
    path.write_text(text, encoding="utf-8")


def stage_times(run_dir: Path) -> list[tuple[str, float]]:
    import pandas as pd

    rows = []
    for pattern in ("results/benchmarks/empo/generate_*.tsv", "results/benchmarks/evaluation/lm_eval_*.tsv",
                    "results/benchmarks/evaluation/evaluate_*.tsv", "results/benchmarks/evaluation/epitome_*.tsv"):
        for path in sorted(run_dir.glob(pattern)):
            rows.append((path.stem, float(pd.read_csv(path, sep="\t")["s"].iloc[0])))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(REPO / "results" / "models" / "policy"))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE"], default="PASSIVE",
                        help="as the rule scripts set it (PASSIVE); ACTIVE is libgomp's spinning default")
    parser.add_argument("--stage-run", type=Path, help="a working directory where the evaluation stage ran")
    parser.add_argument("--note", default="", help="a line about the conditions (e.g. other load)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "generation.md")
    args = parser.parse_args()
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy  # read when torch loads OpenMP

    import torch
    from empathy_workflow.empo import generation

    torch.set_num_threads(args.threads)
    prompts = ed_prompts(args.prompts, args.seed)
    model, tokenizer = generation.load_model(args.model)
    settings = {"max_new_tokens": args.max_new_tokens, "do_sample": False}
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"])
               for text in generation.render_prompts(tokenizer, prompts)]
    load_before = os.getloadavg()

    single, single_time, single_cpu = timed(
        lambda: generation.generate_one_at_a_time(model, tokenizer, prompts, settings))
    print(f"one at a time: {single_time:.1f} s ({single_cpu:.1f} s CPU)", flush=True)
    rows = [("1 (one at a time, no padding)", single_time, single_cpu, 1.0, 1.0, len(prompts))]
    for batch_size in args.batch_sizes:
        batched, batched_time, batched_cpu = timed(
            lambda: generation.generate(model, tokenizer, prompts, settings, batch_size=batch_size, progress=False))
        same = sum(a == b for a, b in zip(batched, single))
        print(f"batch {batch_size}: {batched_time:.1f} s ({batched_cpu:.1f} s CPU), {same}/{len(prompts)} identical",
              flush=True)
        rows.append((str(batch_size), batched_time, batched_cpu, single_time / batched_time,
                     single_cpu / batched_cpu, same))
    load_after = os.getloadavg()

    lines = [
        SECTION,
        "",
        "Made by `python benchmarks/bench_generation.py " + " ".join(sys.argv[1:]) + "`.",
        "",
        f"- {len(prompts)} ED prompts (chat template, generation prompt), {min(lengths)}-{max(lengths)} tokens "
        f"(mean {sum(lengths) / len(lengths):.0f}); greedy, at most {args.max_new_tokens} new tokens, KV cache.",
        f"- policy {args.model} (fp32), torch {torch.__version__}, {args.threads} thread(s), "
        f"OMP_WAIT_POLICY={args.omp_wait_policy}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after." + (f" {args.note}" if args.note else ""),
        "- One at a time = batch size 1, no padding (what the EmPO code's per-prompt pipeline call does).",
        "  Batched = prompts sorted by length, left-padded batches, outputs put back in input order.",
        "",
        "| batch size | wall s | CPU s | speed-up (wall) | speed-up (CPU) | texts identical to one-at-a-time |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {wall:.1f} | {cpu:.1f} | {speedup:.1f}x | {cpu_speedup:.1f}x | {same}/{len(prompts)} |"
              for name, wall, cpu, speedup, cpu_speedup, same in rows]
    if args.stage_run:
        times = stage_times(args.stage_run)
        lines += ["", f"## Evaluation stage, default config ({args.stage_run})", "",
                  "Snakemake `benchmark:` wall-clock seconds per job.", "", "| job | seconds |", "|---|---|"]
        lines += [f"| {name} | {seconds:.1f} |" for name, seconds in times]
        lines += [f"| **total** | **{sum(seconds for _, seconds in times):.1f}** |"]
    write_section(args.output, lines)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
