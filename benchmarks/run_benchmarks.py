"""Gather the workflow's performance figures into benchmarks/RESULTS.md (one results file).

    python benchmarks/run_benchmarks.py [--only full,rules,noop,generation,pairs]
        [--workdir DIR] [--from-run DIR] [--configfile EXTRA.yaml ...] [--reuse-models]

Sections (each measured separately and merged into benchmarks/results.json, which RESULTS.md is
rendered from, so re-measuring one section keeps the others):

  full        the default run (`make run`: snakemake --cores 2 on config.yaml) in a scratch DIR
              (--workdir, default /tmp/empathy-bench/run), wall and CPU time
  rules       per-rule wall time, CPU time and peak memory (max_rss) from Snakemake's benchmark
              files (results/benchmarks/**/*.tsv) of that run, or of --from-run DIR
  noop        the dry run of a completed run (nothing to do): 5 repetitions, target < 3 s
  generation  batched vs one-at-a-time generation (benchmarks/bench_generation.py)
  pairs       EmPO preference-pair rate at the full ED train size (benchmarks/bench_pairs.py)

Every section records the load average before and after it: this machine is often shared, and a
wall time measured at load 8 on 2 cores is not the figure an idle machine gives.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "benchmarks"
STORE = HERE / "results.json"
RESULTS = HERE / "RESULTS.md"
SECTIONS = ("full", "rules", "noop", "generation", "pairs")
STAGE_NOTES = {  # per-stage notes written by each stage's engineer
    "similarity.md": "similarity stage (encoders, contrastive and LLM fine-tuning, scoring)",
    "empo.md": "EmPO pairs, SFT and DPO training",
    "generation.md": "generation and lm-eval (written by bench_generation.py)",
    "evaluation.md": "EmPO evaluation (EPITOME classifier, text metrics, significance)",
}
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def conditions() -> dict:
    load = os.getloadavg()
    return {"time": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load": [round(x, 2) for x in load]}


def machine() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as handle:
        memory_kb = int(handle.readline().split()[1])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(memory_kb / 1e6, 1),
            "python": platform.python_version(), "commit": commit or "unknown"}


def snakemake_command(workdir: Path, configfiles, *args) -> list[str]:
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
    for path in configfiles:
        command += ["--configfile", str(path)]
    return command + list(args)


def run(command, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, **OFFLINE)
    return subprocess.run(command, env=env, text=True, capture_output=True, **kwargs)


# --------------------------------------------------------------------------------------------


def full_from_log(log: Path) -> dict:
    """The figures of a finished run from its Snakemake log (a run made outside this script)."""
    text = log.read_text(encoding="utf-8", errors="replace")
    elapsed = re.search(r"Elapsed time: (?:(\d+) days?, )?(\d+):(\d+):([\d.]+)", text)
    jobs = re.search(r"(\d+) of (\d+) steps \(100%\) done", text)
    command = re.search(r"Command: (.*)", text)
    if not (elapsed and jobs):
        raise SystemExit(f"{log}: no 'Elapsed time' / '100% done' lines: not a finished run's log")
    days, hours, minutes, seconds = (float(x or 0) for x in elapsed.groups())
    configfiles = re.findall(r"--configfile[= ](\S+)", command.group(1)) if command else []
    cores = re.search(r"--cores[= ](\d+)", command.group(1)) if command else None
    stamps = re.findall(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$", text, re.M)
    return {"ran": f"{stamps[0]} to {stamps[-1]}" if stamps else None, "workdir": str(log.parent), "log": str(log), "cores": int(cores.group(1)) if cores else None,
            "configfiles": configfiles, "reused_models": None, "cpu_s": None, "jobs": int(jobs.group(2)),
            "wall_s": round(((days * 24 + hours) * 60 + minutes) * 60 + seconds, 1)}


def bench_full(args) -> dict:
    if args.full_from_log:
        return full_from_log(args.full_from_log)
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    if args.reuse_models and (REPO / "results" / "models").is_dir():
        for name in ("policy", "encoder"):
            source, target = REPO / "results" / "models" / name, workdir / "results" / "models" / name
            if source.is_dir() and not target.exists():
                shutil.copytree(source, target)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = run(snakemake_command(workdir, args.configfile, "--cores", str(args.cores)), cwd=workdir)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (workdir / "benchmark_run.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        raise SystemExit(f"the run failed ({result.returncode}); see {workdir / 'benchmark_run.log'}")
    jobs = re.search(r"(\d+) of (\d+) steps \(100%\) done", result.stderr + result.stdout)
    return {"workdir": str(workdir), "cores": args.cores, "configfiles": [str(p) for p in args.configfile],
            "reused_models": bool(args.reuse_models), "wall_s": round(wall, 1),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
            "jobs": int(jobs.group(2)) if jobs else None}


def bench_rules(args) -> dict:
    import pandas as pd

    run_dir = args.from_run or args.workdir
    rows = []
    for path in sorted((run_dir / "results" / "benchmarks").rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        name = str(path.relative_to(run_dir / "results" / "benchmarks").with_suffix(""))
        rows.append({"job": name, "wall_s": round(float(table["s"].max()), 1),
                     "cpu_s": round(float(table["cpu_time"].max()), 1),
                     "max_rss_mb": round(float(pd.to_numeric(table["max_rss"], errors="coerce").max()), 1),
                     "mean_load": round(float(pd.to_numeric(table["mean_load"], errors="coerce").max()), 1)})
    if not rows:
        raise SystemExit(f"no benchmark files under {run_dir / 'results' / 'benchmarks'}: run the workflow first")
    return {"run_dir": str(run_dir), "rows": rows}


def bench_noop(args) -> dict:
    run_dir = args.from_run or args.workdir
    times, cpu = [], []
    for _ in range(args.repeats):
        usage, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        result = run(snakemake_command(run_dir, args.configfile, "-n"), cwd=run_dir)
        times.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime)
        output = result.stdout + result.stderr
        if result.returncode != 0 or "Nothing to be done" not in output:
            raise SystemExit(f"the run in {run_dir} is not complete (the dry run plans jobs):\n{output[-3000:]}")
    return {"run_dir": str(run_dir), "configfiles": [str(p) for p in args.configfile],
            "times_s": [round(t, 2) for t in times], "median_s": round(statistics.median(times), 2),
            "cpu_s": [round(c, 2) for c in cpu], "median_cpu_s": round(statistics.median(cpu), 2),
            "target_s": 3.0}


def bench_generation(args) -> dict:
    command = [sys.executable, str(HERE / "bench_generation.py"), "--model", str(args.policy),
               "--prompts", str(args.prompts), "--max-new-tokens", str(args.max_new_tokens),
               "--batch-sizes", *map(str, args.batch_sizes),
               "--note", f"run by run_benchmarks.py; load average at start {os.getloadavg()[0]:.1f}"]
    # its own report goes to a scratch file: benchmarks/generation.md is the stage engineer's notes
    with tempfile.TemporaryDirectory() as scratch:
        result = run(command + ["--output", str(Path(scratch) / "generation.md")], cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"bench_generation.py failed:\n{result.stderr[-3000:]}")
    single = re.search(r"one at a time: ([\d.]+) s \(([\d.]+) s CPU\)", result.stdout)
    batches = [{"batch_size": int(m[0]), "wall_s": float(m[1]), "cpu_s": float(m[2]), "identical": m[3]}
               for m in re.findall(r"batch (\d+): ([\d.]+) s \(([\d.]+) s CPU\), (\d+/\d+) identical",
                                   result.stdout)]
    return {"prompts": args.prompts, "max_new_tokens": args.max_new_tokens,
            "one_at_a_time": {"wall_s": float(single[1]), "cpu_s": float(single[2])} if single else None,
            "batched": batches, "stdout": result.stdout.strip().splitlines()[-12:]}


def bench_pairs(args) -> dict:
    result = run([sys.executable, str(HERE / "bench_pairs.py"), "--conversations", str(args.conversations)],
                 cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"bench_pairs.py failed:\n{result.stderr[-3000:]}")
    counts = re.search(r"conversations: (\d+)\s+pairs: (\d+)", result.stdout)
    build = re.search(r"build \(incl\. lengths\): ([\d.]+) s", result.stdout)
    figures = {"stdout": result.stdout.strip().splitlines()}
    if counts and build:
        pairs, seconds = int(counts[2]), float(build[1])
        figures.update(conversations=int(counts[1]), pairs=pairs, build_s=seconds,
                       pairs_per_s=round(pairs / seconds) if seconds else None)
    return figures


RUNNERS = {"full": bench_full, "rules": bench_rules, "noop": bench_noop,
           "generation": bench_generation, "pairs": bench_pairs}


# --------------------------------------------------------------------------------------------


def when(entry) -> str:
    before, after = entry["before"], entry["after"]
    note = f" {entry['note']}" if entry.get("note") else ""
    return (f"_Measured {before['time']}, commit {entry['commit']}; load average (1/5/15 min) "
            f"{'/'.join(map(str, before['load']))} before, {'/'.join(map(str, after['load']))} after._{note}")


def render(store: dict) -> str:
    info = store.get("machine", {})
    lines = [
        "# Benchmarks",
        "",
        "Written by `python benchmarks/run_benchmarks.py` from `benchmarks/results.json` (do not edit by",
        "hand; re-measure a section with `--only SECTION`). See benchmarks/README.md for what each",
        "section measures and how to reproduce it.",
        "",
        f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores, {info.get('memory_gb', '?')} GB RAM, "
        f"no GPU, Python {info.get('python', '?')}.",
        "",
        "**Load.** The cores were shared with other people's jobs during development. Each section",
        "gives the load average at measurement time: on 2 cores, a load of L means each process got",
        "about 2/L of a core, so wall times at load > 2 are inflated by about L/2; CPU seconds are the",
        "steadier figure.",
        "",
    ]
    sections = store.get("sections", {})

    full = sections.get("full")
    lines += ["## Full run (`make run`)", ""]
    if full:
        source = (f" (read from the log of a run made outside this script, `{full['log']}`, which ran "
                  f"{full.get('ran')}: the load figures below are from reading it, see the note)"
                  if full.get("log") else "")
        cpu = f", {full['cpu_s']:.0f} s CPU" if full.get("cpu_s") is not None else ""
        lines += [when(full), "",
                  f"`snakemake --cores {full['cores']}` on config.yaml"
                  + (f" + {', '.join(Path(p).name for p in full['configfiles'])}" if full["configfiles"] else "")
                  + f" in `{full['workdir']}`{source}: **{full['wall_s']:.0f} s wall** ({full['wall_s'] / 60:.1f} min)"
                  f"{cpu}, {full['jobs']} jobs"
                  + (" (models copied in, not prepared)" if full["reused_models"] else "") + ".", ""]
    else:
        lines += ["Not measured yet (`--only full`).", ""]

    rules = sections.get("rules")
    lines += ["## Per rule (Snakemake benchmark files)", ""]
    if rules:
        rows = rules["rows"]
        lines += [when(rules), "", f"From `{rules['run_dir']}/results/benchmarks/**/*.tsv`: `s` (wall), "
                  "`cpu_time` and `max_rss` (peak resident memory) of each job; `mean_load` is the job's "
                  "mean CPU use in % of one core (wall >> CPU s means the job waited for a core). "
                  "Rules without a `benchmark:` directive (data preparation, pairs, metrics, "
                  "significance, report: seconds each) are not listed.", "",
                  "| job | wall s | CPU s | peak RSS MB | mean CPU % |", "|---|---:|---:|---:|---:|"]
        for row in sorted(rows, key=lambda r: -r["wall_s"]):
            lines.append(f"| {row['job']} | {row['wall_s']} | {row['cpu_s']} | {row['max_rss_mb']} | {row['mean_load']} |")
        lines += [f"| **total (benchmarked jobs)** | **{sum(r['wall_s'] for r in rows):.0f}** | "
                  f"**{sum(r['cpu_s'] for r in rows):.0f}** | max {max(r['max_rss_mb'] for r in rows):.0f} | |", ""]
    else:
        lines += ["Not measured yet (`--only rules`).", ""]

    noop = sections.get("noop")
    lines += ["## No-op dry run", ""]
    if noop:
        verdict = "meets" if noop["median_s"] < noop["target_s"] else "misses"
        lines += [when(noop), "", f"`snakemake -n` on a completed run (`{noop['run_dir']}`"
                  + (f", with {', '.join(Path(p).name for p in noop['configfiles'])}" if noop["configfiles"] else "")
                  + f"): nothing to do. Median **{noop['median_s']} s wall** over {len(noop['times_s'])} runs "
                  f"({', '.join(map(str, noop['times_s']))} s): {verdict} the {noop['target_s']:.0f} s target at "
                  f"this load. CPU time (user+sys) median **{noop['median_cpu_s']} s** "
                  f"({', '.join(map(str, noop['cpu_s']))} s): a single-threaded process, so on an idle "
                  "core the wall time is about the CPU time (plus disk reads). About 1.3 s of that CPU time is "
                  "Snakemake's own start-up (`snakemake --version` alone), much of it importing the "
                  "installed executor plugins (the Slurm plugin imports pandas).", ""]
    else:
        lines += ["Not measured yet (`--only noop`).", ""]

    generation = sections.get("generation")
    lines += ["## Batched vs one-at-a-time generation", ""]
    if generation and generation.get("one_at_a_time"):
        single = generation["one_at_a_time"]
        lines += [when(generation), "", f"{generation['prompts']} ED prompts, {generation['max_new_tokens']} new "
                  "tokens, greedy, the policy model (benchmarks/bench_generation.py; the stage's "
                  "own measurements: [generation.md](generation.md)).", "",
                  "| mode | wall s | CPU s | speed-up (wall) | speed-up (CPU) | texts identical to one-at-a-time |",
                  "|---|---:|---:|---:|---:|---|",
                  f"| one at a time | {single['wall_s']} | {single['cpu_s']} | 1.0x | 1.0x | |"]
        for batch in generation["batched"]:
            speedup = single["cpu_s"] / batch["cpu_s"] if batch["cpu_s"] else float("nan")
            wall = single["wall_s"] / batch["wall_s"] if batch["wall_s"] else float("nan")
            lines.append(f"| batch {batch['batch_size']} | {batch['wall_s']} | {batch['cpu_s']} | {wall:.1f}x | {speedup:.1f}x | "
                         f"{batch['identical']} |")
        lines.append("")
    else:
        lines += ["Not measured yet (`--only generation`).", ""]

    pairs = sections.get("pairs")
    lines += ["## Preference-pair rate", ""]
    if pairs and pairs.get("pairs_per_s"):
        lines += [when(pairs), "", f"`benchmarks/bench_pairs.py`: {pairs['conversations']:,} synthetic ED-like "
                  f"conversations{' (the full ED train size)' if pairs['conversations'] == 19533 else ''} -> {pairs['pairs']:,} pairs in {pairs['build_s']} s: "
                  f"**{pairs['pairs_per_s']:,} pairs/s** (whitespace lengths; plutchik mapping).", "",
                  "```", *pairs["stdout"], "```", ""]
    else:
        lines += ["Not measured yet (`--only pairs`).", ""]

    lines += ["## Per-stage notes", ""]
    for name, what in STAGE_NOTES.items():
        if (HERE / name).exists():
            lines.append(f"- [{name}]({name}): {what}")
        else:
            lines.append(f"- {name} ({what}): not written yet")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections, in this order: {','.join(SECTIONS)}")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/empathy-bench/run"),
                        help="scratch directory of the full run (rules/noop read it unless --from-run)")
    parser.add_argument("--from-run", type=Path, help="a completed run directory for rules/noop")
    parser.add_argument("--configfile", type=Path, nargs="*", default=[],
                        help="extra config files of the run (config.yaml is always loaded)")
    parser.add_argument("--full-from-log", type=Path,
                        help="`full`: take the figures from a finished run's Snakemake log instead of running")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--reuse-models", action="store_true",
                        help="copy results/models/{policy,encoder} of the repository instead of preparing them")
    parser.add_argument("--repeats", type=int, default=5, help="no-op dry runs to time")
    parser.add_argument("--policy", type=Path, default=REPO / "results" / "models" / "policy")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--conversations", type=int, default=19533)
    parser.add_argument("--note", default="", help="a sentence about the conditions, shown with the sections")
    parser.add_argument("--render-only", action="store_true", help="rewrite RESULTS.md from results.json")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    args.from_run = args.from_run.resolve() if args.from_run else None
    args.full_from_log = args.full_from_log.resolve() if args.full_from_log else None
    args.configfile = [p.resolve() for p in args.configfile]

    store = json.loads(STORE.read_text()) if STORE.exists() else {}
    store["machine"] = machine()
    if not args.render_only:
        chosen = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(chosen) - set(SECTIONS))
        if unknown:
            parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
        for section in SECTIONS:
            if section not in chosen:
                continue
            print(f"[{section}] load {os.getloadavg()[0]:.1f} ...", flush=True)
            before = conditions()
            figures = RUNNERS[section](args)
            figures.update(before=before, after=conditions(), commit=store["machine"]["commit"], note=args.note)
            store.setdefault("sections", {})[section] = figures
            # saved after each section: a later failure keeps what was measured
            STORE.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            RESULTS.write_text(render(store), encoding="utf-8")
            print(f"[{section}] done", flush=True)
    STORE.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    RESULTS.write_text(render(store), encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
