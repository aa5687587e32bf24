"""A throw-away single-node Slurm on this machine, for tests/test_slurm.py.

Everything lives in one private directory (configuration, munge key and socket, state, logs),
on private ports, so it never touches a system Slurm or munge. The daemons run in the
foreground as our child processes and are stopped by their PIDs.

The node advertises a fake GPU (gres.conf File=/dev/null) and more CPUs and memory than the
machine has (SlurmdParameters=config_overrides): Slurm then schedules the profile's real
requests (--gpus=1, --mem 32000, --cpus-per-gpu=4) unchanged. Nothing enforces them here
(no cgroups), and jobs run on CPU.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = ["slurm-wlm", "munge"]
# The plugin's job step runs `srun` with every SLURM_* variable but a few removed, SLURM_CONF
# included (snakemake-executor-plugin-slurm-jobstep 0.6.1), so inside a job only the default
# path finds the configuration, as on a real cluster. We link ours there while we run.
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
BINARIES = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel"]


def root_prefix() -> list[str] | None:
    """[] as root, ["sudo", "-n"] with password-less sudo, None when neither works."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def install(prefix: list[str], timeout: float = 900) -> float:
    """apt-get install slurm-wlm and munge unless their binaries are there; return the seconds spent."""
    if all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in BINARIES):
        return 0.0
    start = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        result = subprocess.run(prefix + command, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                               f"{result.stderr[-3000:]}")
    return time.monotonic() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin") / name)


class LocalSlurm:
    """munged + slurmctld + slurmd for one node named after this host, partition PARTITION."""

    PARTITION = "empathy"

    def __init__(self, prefix: list[str], cpus: int = 8, memory_mb: int = 200_000, gpus: int = 1):
        self.prefix = prefix
        self.cpus, self.memory_mb, self.gpus = cpus, memory_mb, gpus
        # Short path: a unix socket path must stay under 108 bytes. 0755: munged insists that
        # its socket directory be reachable by everyone.
        self.root = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
        self.root.chmod(0o755)
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.processes: dict[str, subprocess.Popen] = {}
        self.linked_default_conf = False
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    # -- set-up -----------------------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("state", "spool"):
            (self.root / sub).mkdir()
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        if self.prefix:  # munged (run through sudo) wants a root-owned key
            self._root_run("chown", "root:root", str(key))
        values = dict(
            root=self.root, node=self.node, partition=self.PARTITION, cpus=self.cpus,
            memory_mb=self.memory_mb, gpus=self.gpus, ctld_port=_free_port(), slurmd_port=_free_port(),
        )
        self.conf.write_text((HERE / "slurm.conf.in").read_text().format(**values))
        (self.root / "gres.conf").write_text(f"NodeName={self.node} Name=gpu Count={self.gpus} File=/dev/null\n")

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.root / f"{name}.out", "w")
        self.processes[name] = subprocess.Popen(self.prefix + command, stdout=log, stderr=subprocess.STDOUT,
                                                env=self.env, start_new_session=True)
        log.close()

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.tail(name)}")

    def link_default_conf(self) -> None:
        if DEFAULT_CONF.is_symlink() and os.readlink(DEFAULT_CONF).startswith("/tmp/slurm-"):
            self._root_run("rm", "-f", str(DEFAULT_CONF))  # left by an earlier, killed test run
        if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
            raise RuntimeError(f"{DEFAULT_CONF} exists (a system Slurm?): this test only runs where it does not")
        self._root_run("mkdir", "-p", str(DEFAULT_CONF.parent))
        self._root_run("ln", "-s", str(self.conf), str(DEFAULT_CONF))
        self.linked_default_conf = True

    def _root_run(self, *command: str) -> None:
        subprocess.run(self.prefix + list(command), check=True, capture_output=True)

    def start(self, timeout: float = 90) -> None:
        self.write_config()
        self.link_default_conf()
        r = self.root
        self._spawn("munged", [_sbin("munged"), "--foreground", f"--socket={r}/munge.socket",
                               f"--key-file={r}/munge.key", f"--pid-file={r}/munged.pid",
                               f"--log-file={r}/munged.log", f"--seed-file={r}/munged.seed"])
        self._wait(lambda: (r / "munge.socket").exists(), timeout, "munged socket")
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-f", str(self.conf)])
        self._spawn("slurmd", [_sbin("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait(lambda: self.node_state() == "idle", timeout, "node idle in sinfo")

    def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if predicate():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}; slurmctld:\n{self.tail('slurmctld')}\n"
                           f"slurmd:\n{self.tail('slurmd')}")

    # -- queries ------------------------------------------------------------------------------
    def run(self, *command: str, check: bool = True) -> str:
        result = subprocess.run(list(command), env=self.env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr}")
        return result.stdout

    def node_state(self) -> str:
        return self.run("sinfo", "--noheader", "--format=%t", check=False).strip()

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (MinJobAge keeps finished ones for an hour)."""
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i|%T|%j|%k")
        return [dict(zip(("id", "state", "name", "comment"), line.split("|", 3)))
                for line in out.splitlines() if line.strip()]

    def job_details(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (MinMemoryNode, TimeLimit, TresPerJob, NumCPUs, ...)."""
        out = self.run("scontrol", "show", "job", "--oneliner", job_id)
        details = {}
        for token in out.split():
            if "=" in token:
                key, value = token.split("=", 1)
                details[key] = value
        return details

    def tail(self, name: str, lines: int = 40) -> str:
        text = ""
        for path in (self.root / f"{name}.out", self.root / f"{name}.log"):
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # -- tear-down ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel leftover jobs, then stop slurmd, slurmctld and munged by PID."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            self.run("scancel", f"--partition={self.PARTITION}", check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(
                    j["state"] in ("RUNNING", "PENDING", "COMPLETING") for j in self.jobs()):
                time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            self._signal(process, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._signal(process, signal.SIGKILL)
                process.wait(timeout=10)
        if self.linked_default_conf and DEFAULT_CONF.is_symlink() and os.readlink(DEFAULT_CONF) == str(self.conf):
            self._root_run("rm", "-f", str(DEFAULT_CONF))

    def cleanup(self) -> None:
        """Remove the cluster's directory (the daemons wrote into it as root)."""
        if self.prefix:
            self._root_run("rm", "-rf", str(self.root))
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def _signal(self, process: subprocess.Popen, sig: int) -> None:
        if self.prefix:  # started through sudo: signal it with sudo's rights (sudo relays it)
            subprocess.run(self.prefix + ["kill", f"-{int(sig)}", str(process.pid)], capture_output=True)
        else:
            process.send_signal(sig)
