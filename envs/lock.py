"""Lock every per-rule environment to its whole pip closure, taken from the tested venv.

    .venv/bin/python envs/lock.py            # rewrite envs/*.yaml and envs/empathy.lock.txt
    .venv/bin/python envs/lock.py --check    # exit 1 (and say what differs) when they are stale

Each environment's top-level packages live in envs/<env>.in (one `name==version` or
`name[extras]==version` a line, comments kept as the environment file's notes). This script follows
their requirements (extras included, environment markers evaluated for Linux x86_64 / CPython 3.11)
through the packages installed in the venv the test suite runs with, and writes envs/<env>.yaml
pinning every package of that closure to the version installed here. So a conda environment
installs exactly what was tested, not whatever pip resolves on the day (tests/test_envs.py checks
that each lock agrees with the venv on every shared package and that no lock is stale).

torch: the environments whose rules run on a GPU (GPU_ENVS) take torch from PyPI, which on Linux
x86_64 is the CUDA build (its own metadata pins the nvidia-*-cu12 runtime wheels exactly, so
pinning torch pins them); every other environment that needs torch would take the CPU build from
the PyTorch CPU index (TORCH_CPU_INDEX). The venv here has the CPU build of the same version.

envs/empathy.lock.txt: the union of the GPU-side locks, which envs/empathy.def (the Apptainer image
for `--software-deployment-method apptainer`) installs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ENVS = Path(__file__).resolve().parent
GROUPS = ("data", "analysis", "training", "evaluation")
# The environments of the rules that declare a GPU (gpu=gpu_request(...) in rules/*.smk).
GPU_ENVS = {"training", "evaluation"}
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYTHON = "3.11.7"
PIP = "23.2.1"
# Installed by pip itself or provided by the interpreter; never pinned.
SKIP = {"pip", "setuptools", "wheel"}
# The target platform of the locks: a Linux x86_64 node with CPython 3.11.
MARKERS = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux",
           "platform_machine": "x86_64", "os_name": "posix", "python_version": "3.11",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_in(env: str) -> tuple[list[str], list[Requirement]]:
    """(comment lines, top-level requirements) of envs/<env>.in."""
    notes, top = [], []
    for line in (ENVS / f"{env}.in").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            notes.append(stripped)
        elif stripped:
            top.append(Requirement(stripped))
    return notes, top


def installed_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"envs/lock.py: {name} is required but not installed in this venv ({sys.prefix}); "
                         f"install requirements.txt first (make setup)") from None


def closure(top: list[Requirement]) -> dict[str, str]:
    """{normalised name: installed version} of the top-level packages and everything they need."""
    found: dict[str, str] = {}
    queue = [(req.name, set(req.extras)) for req in top]
    seen: set[tuple[str, frozenset]] = set()
    while queue:
        name, extras = queue.pop()
        key = (normalise(name), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        if normalise(name) in SKIP:
            continue
        found[normalise(name)] = installed_version(name)
        for spec in importlib.metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is not None:
                if not any(req.marker.evaluate({**MARKERS, "extra": extra}) for extra in (extras or {""})):
                    continue
            queue.append((req.name, set(req.extras)))
    return found


def pin(name: str, version: str, extras: dict[str, set[str]], gpu: bool) -> str:
    if name == "torch":
        base = version.split("+")[0]
        return f"torch=={base}" if gpu else f"torch=={base}+cpu"
    asked = sorted(extras.get(name, ()))
    return f"{name}{'[' + ','.join(asked) + ']' if asked else ''}=={version.split('+')[0]}"


def render(env: str) -> tuple[str, list[str]]:
    """(envs/<env>.yaml text, its pin lines)."""
    notes, top = read_in(env)
    extras = {normalise(req.name): set(req.extras) for req in top if req.extras}
    for req in top:  # the .in pins are the venv's too
        want = str(req.specifier).removeprefix("==")
        have = installed_version(req.name).split("+")[0]
        if want != have:
            raise SystemExit(f"envs/{env}.in: {req.name}=={want}, but the venv has {have}")
    found = closure(top)
    gpu = env in GPU_ENVS
    pins = [pin(name, version, extras, gpu) for name, version in sorted(found.items())]
    lines = [f"# GENERATED by envs/lock.py from envs/{env}.in and the tested venv: do not edit; edit",
             f"# envs/{env}.in and rerun `.venv/bin/python envs/lock.py`. Every package of the closure is",
             "# pinned (tests/test_envs.py: the lock agrees with the venv and is not stale)."]
    lines += notes
    if "torch" in found:
        lines.append("# torch: the CUDA build from PyPI (GPU rules)" if gpu else
                     f"# torch: the CPU build from {TORCH_CPU_INDEX} (no GPU rule uses this environment)")
    lines += [f"name: empathy-{env}", "channels:", "  - conda-forge", "  - nodefaults", "dependencies:",
              f"  - python=={PYTHON}", f"  - pip=={PIP}", "  - pip:"]
    if "torch" in found and not gpu:
        lines.append(f"      - --extra-index-url {TORCH_CPU_INDEX}")
    lines += [f"      - {p}" for p in pins]
    return "\n".join(lines) + "\n", pins


def container_lock(all_pins: dict[str, list[str]]) -> str:
    """The union of the environments' locks (the GPU build of torch) for envs/empathy.def."""
    union: dict[str, str] = {}
    for env in GROUPS:
        for line in all_pins[env]:
            name = normalise(re.match(r"[A-Za-z0-9_.-]+", line).group(0))
            if name == "torch":
                line = line.replace("+cpu", "")
            if name in union and union[name] != line:
                # keep the one with extras (the same version either way: all come from one venv)
                line = max(union[name], line, key=len)
            union[name] = line
    header = ("# GENERATED by envs/lock.py: the union of envs/*.yaml's pip locks (CUDA torch from PyPI),\n"
              "# installed by envs/empathy.def. Do not edit.\n")
    return header + "\n".join(union[name] for name in sorted(union)) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale locks (exit 1)")
    args = parser.parse_args(argv)
    stale, all_pins = [], {}
    outputs = {}
    for env in GROUPS:
        text, pins = render(env)
        all_pins[env] = pins
        outputs[ENVS / f"{env}.yaml"] = text
    outputs[ENVS / "empathy.lock.txt"] = container_lock(all_pins)
    for path, text in outputs.items():
        if not path.exists() or path.read_text() != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        print(f"stale locks (rerun .venv/bin/python envs/lock.py): {', '.join(stale)}")
        return 1
    print(("up to date: " if args.check or not stale else "written: ") + ", ".join(stale or [p.name for p in outputs]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
