"""A real single-node SLURM cluster on this host, for tests.

`single_node_cluster` starts munged (unless one already answers), slurmctld and slurmd with one node that declares
GPUs as GRES on placeholder device files, and stops what it started on exit. It needs root and Debian's slurm-wlm and
munge packages, and raises `SlurmUnavailable` otherwise (tests turn it into a skip). `job_records` reads jobs back.
"""

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# The Snakemake SLURM plugin runs srun inside the allocation with a sanitised environment, so SLURM_CONF does not
# reach the job steps: the configuration must sit at the default path (files already there are restored on exit).
CONF_DIR = Path("/etc/slurm")
HOSTS_FILE = Path("/etc/hosts")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_DIRS = [Path("/etc/munge"), Path("/run/munge"), Path("/var/lib/munge"), Path("/var/log/munge")]
SLURM_PORTS = {"SlurmctldPort": 6817, "SlurmdPort": 6818}
REQUIRED_BINARIES = ["slurmctld", "slurmd", "munged", "munge", "unmunge", "sbatch", "scontrol", "squeue", "sinfo",
                     "scancel", "runuser"]
SBIN_DIRS = ["/usr/local/sbin", "/usr/sbin", "/sbin"]  # root's binaries, absent from PATH in some environments
START_TIMEOUT_S = 60
PID_FILE_TIMEOUT_S = 10
STOP_TIMEOUT_S = 15
LOG_TAIL_LINES = 15
UNIX_SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, the last one NUL
# one cluster per host at a time (its ports and /etc/slurm are the host's): a second waits for the first to stop,
# be it in another pytest-xdist worker or another pytest
HOST_LOCK = Path("/tmp/wsss-test-slurm-cluster.lock")


class SlurmUnavailable(Exception):
    """Why a cluster cannot start here (tests turn it into a skip)."""


@dataclass(frozen=True)
class SlurmCluster:
    """What the running cluster offers: its one partition and node, with the node's declared CPUs, memory, GPUs."""

    partition: str
    node: str
    cpus: int
    real_memory_mb: int
    gpus: int
    conf_dir: Path
    workdir: Path


@dataclass(frozen=True)
class Daemon:
    name: str
    pid_file: Path
    log_file: Path

    @property
    def stderr_file(self) -> Path:
        """What the daemon prints before its log file is open (configuration errors)."""
        return self.log_file.with_suffix(".stderr")


MUNGED = Daemon("munged", Path("/run/munge/munged.pid"), Path("/var/log/munge/munged.log"))


@contextlib.contextmanager
def single_node_cluster(workdir: Path, gpus: int = 2, partition: str = "main"):
    """Start munged (if not already running), slurmctld and slurmd on this host with one node, one default
    partition, `gpus` GPUs declared as GRES on placeholder device files; yield a `SlurmCluster`. On exit (even when
    the body raised) cancel the jobs, stop the daemons it started through their pid files, and restore /etc/slurm
    and /etc/hosts. State, spool, logs, pid files and device files stay under `workdir`."""
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    if os.geteuid() != 0:
        raise SlurmUnavailable("starting SLURM and munge daemons needs root")
    tools = find_binaries(REQUIRED_BINARIES)
    workdir = Path(workdir).resolve()
    node = socket.gethostname().split(".")[0]
    ensure_step_sockets_fit(workdir / "spool", node)
    controller = Daemon("slurmctld", workdir / "run" / "slurmctld.pid", workdir / "log" / "slurmctld.log")
    node_daemon = Daemon("slurmd", workdir / "run" / "slurmd.pid", workdir / "log" / "slurmd.log")
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(host_lock(HOST_LOCK))
        ensure_ports_free(SLURM_PORTS.values())
        start_munged_unless_running(tools, cleanup)
        make_resolvable(node, cleanup)
        hardware = node_hardware(tools["slurmd"])
        real_memory_mb = int(hardware["RealMemory"]) * 3 // 4  # headroom for the host's own processes
        cluster = SlurmCluster(partition=partition, node=node, cpus=int(hardware["CPUs"]),
                               real_memory_mb=real_memory_mb, gpus=gpus, conf_dir=CONF_DIR, workdir=workdir)
        for folder in ["state", "spool", "log", "run", "dev"]:
            (workdir / folder).mkdir(parents=True, exist_ok=True)
        device_files = create_gpu_placeholders(workdir / "dev", gpus)
        install_config({"slurm.conf": slurm_conf(cluster, hardware, controller, node_daemon),
                        "gres.conf": gres_conf(node, device_files)}, cleanup)
        # The stack unwinds in reverse: jobs are cancelled, then slurmd stops, then slurmctld.
        cleanup.callback(stop_daemon, controller)
        start_daemon(tools[controller.name], controller)
        cleanup.callback(stop_daemon, node_daemon)
        start_daemon(tools[node_daemon.name], node_daemon)
        cleanup.callback(cancel_all_jobs, tools)
        wait_until_idle(tools, node, [controller, node_daemon])
        yield cluster


@contextlib.contextmanager
def host_lock(path: Path):
    """Hold an exclusive lock on `path` (waiting for whoever holds it) until the block ends."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def job_records() -> list[dict]:
    """Every job slurmctld knows, one dict of strings per line of `scontrol show job -o` (key: value as printed).

    On slurm-wlm 22.05 the GPU request shows only in `TresPer*`: `sbatch --gpus=1` (what the Snakemake plugin sends
    for resources `gpu=1`) gives `TresPerJob=gres:gpu:1`, `--gres=gpu:2` gives `TresPerNode=gres:gpu:2`; a job
    without GPUs has neither key. `TRES` stays `cpu=1,mem=100M,node=1,billing=1` either way: gres/gpu would need
    AccountingStorageTRES, which slurmctld refuses without slurmdbd.
    Values are split at spaces followed by `Key=`, so a value that itself holds ` word=` would be cut there.
    """
    scontrol = find_binaries(["scontrol"])["scontrol"]
    output = subprocess.run([scontrol, "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    return [parse_job_line(line) for line in output.splitlines() if "=" in line]


def parse_job_line(line: str) -> dict:
    """`JobId=3 JobName=a b UserId=root(0)` -> {"JobId": "3", "JobName": "a b", "UserId": "root(0)"}."""
    fields = re.split(r"\s+(?=[A-Za-z][\w/:]*=)", line.strip())
    return dict(field.split("=", 1) for field in fields)


def which(name: str) -> str | None:
    """Absolute path of a binary, looking in PATH and the sbin folders."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS]))


def find_binaries(names: list[str]) -> dict[str, str]:
    found = {name: which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise SlurmUnavailable(f"missing binaries: {', '.join(missing)} (Debian: apt-get install slurm-wlm munge)")
    return found


def ensure_step_sockets_fit(spool: Path, node: str) -> None:
    """slurmstepd listens on `<spool>/<node>_<job id>.<step id>`; a longer path makes every job hang, not fail."""
    longest = f"{spool}/{node}_{'9' * 8}.{'9' * 10}"
    if len(longest.encode()) > UNIX_SOCKET_PATH_MAX:
        raise ValueError(f"workdir too long: step sockets like {longest} exceed {UNIX_SOCKET_PATH_MAX} bytes")


def ensure_ports_free(ports) -> None:
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("", port))
            except OSError as error:
                raise SlurmUnavailable(f"port {port} is taken (another SLURM daemon running?): {error}") from None


def run_checked(argv: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise SlurmUnavailable(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def munge_answers(tools: dict[str, str]) -> bool:
    credential = subprocess.run([tools["munge"], "-n"], capture_output=True)
    if credential.returncode != 0:
        return False
    return subprocess.run([tools["unmunge"]], input=credential.stdout, capture_output=True).returncode == 0


def start_munged_unless_running(tools: dict[str, str], cleanup: contextlib.ExitStack) -> None:
    """Reuse a munged that answers (and leave it running); otherwise start one as user munge, stopped on exit."""
    if munge_answers(tools):
        return
    for folder in MUNGE_DIRS:
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    ensure_munge_key()
    cleanup.callback(stop_daemon, MUNGED)
    run_checked([tools["runuser"], "-u", "munge", "--", tools["munged"]])
    if not munge_answers(tools):
        raise SlurmUnavailable(f"munged started but does not answer\n{log_tails([MUNGED])}")


def ensure_munge_key() -> None:
    if MUNGE_KEY.exists():
        return
    creators = {"mungekey": ["-c"], "create-munge-key": []}  # munge >= 0.5.14, older
    for name, arguments in creators.items():
        creator = which(name)
        if creator:
            run_checked([creator, *arguments])
            shutil.chown(MUNGE_KEY, "munge", "munge")
            MUNGE_KEY.chmod(0o600)
            return
    raise SlurmUnavailable(f"no {MUNGE_KEY} and neither mungekey nor create-munge-key to make one")


def make_resolvable(host: str, cleanup: contextlib.ExitStack) -> None:
    """Map `host` to 127.0.0.1 in /etc/hosts if it does not resolve, removing the line on exit."""
    try:
        socket.gethostbyname(host)
        return
    except socket.gaierror:
        pass
    line = f"127.0.0.1 {host}  # added by tests/slurm_cluster.py\n"
    with HOSTS_FILE.open("a") as hosts:
        hosts.write(line)
    cleanup.callback(remove_line, HOSTS_FILE, line)


def remove_line(path: Path, line: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    if line in lines:
        lines.remove(line)
        path.write_text("".join(lines))


def node_hardware(slurmd: str) -> dict[str, str]:
    """What slurmd detects (`slurmd -C`): CPUs, Boards, SocketsPerBoard, CoresPerSocket, ThreadsPerCore,
    RealMemory (MB). Declaring exactly this layout keeps slurmd from draining the node for a mismatch."""
    first_line = run_checked([slurmd, "-C"]).stdout.splitlines()[0]
    return dict(field.split("=", 1) for field in first_line.split())


def create_gpu_placeholders(folder: Path, gpus: int) -> list[Path]:
    """Character devices with /dev/null's numbers. slurmd exports CUDA_VISIBLE_DEVICES and SLURM_JOB_GPUS only for
    GRES files that are devices; empty regular files still schedule but are logged as invalid and export neither."""
    files = [folder / f"gpu{index}" for index in range(gpus)]
    for file in files:
        os.mknod(file, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return files


def slurm_conf(cluster: SlurmCluster, hardware: dict[str, str], controller: Daemon, node_daemon: Daemon) -> str:
    layout = " ".join(f"{key}={hardware[key]}" for key in
                      ["CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore"])
    settings = {
        "ClusterName": "test",
        "SlurmctldHost": cluster.node,
        "SlurmUser": "root",
        "AuthType": "auth/munge",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core_Memory",
        "GresTypes": "gpu",
        "ReturnToService": 2,
        "MinJobAge": 3600,  # finished jobs stay visible to `scontrol show job`
        **SLURM_PORTS,
        "StateSaveLocation": cluster.workdir / "state",
        "SlurmdSpoolDir": cluster.workdir / "spool",
        "SlurmctldPidFile": controller.pid_file,
        "SlurmdPidFile": node_daemon.pid_file,
        "SlurmctldLogFile": controller.log_file,
        "SlurmdLogFile": node_daemon.log_file,
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines.append(f"NodeName={cluster.node} {layout} RealMemory={cluster.real_memory_mb} Gres=gpu:{cluster.gpus} "
                 "State=UNKNOWN")
    lines.append(f"PartitionName={cluster.partition} Nodes={cluster.node} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def gres_conf(node: str, device_files: list[Path]) -> str:
    folder = device_files[0].parent
    return f"NodeName={node} Name=gpu File={folder}/gpu[0-{len(device_files) - 1}]\n"


def install_config(files: dict[str, str], cleanup: contextlib.ExitStack) -> None:
    """Write each file into CONF_DIR; on exit put back what was there (or remove it, and the folder if new)."""
    if not CONF_DIR.exists():
        CONF_DIR.mkdir(parents=True)
        cleanup.callback(CONF_DIR.rmdir)
    for name, text in files.items():
        path = CONF_DIR / name
        previous = path.read_bytes() if path.exists() else None
        cleanup.callback(restore_file, path, previous)
        path.write_text(text)


def restore_file(path: Path, previous: bytes | None) -> None:
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(previous)


def start_daemon(binary: str, daemon: Daemon) -> None:
    """Run a daemon that forks into the background, and wait for its pid file (where slurm.conf says)."""
    with daemon.stderr_file.open("w") as stderr:
        returncode = subprocess.run([binary], stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr).returncode
    if returncode != 0:
        raise SlurmUnavailable(f"{daemon.name} exited with {returncode}\n{log_tails([daemon])}")
    deadline = time.monotonic() + PID_FILE_TIMEOUT_S
    while running_pid(daemon) is None:
        if time.monotonic() > deadline:
            raise SlurmUnavailable(f"{daemon.name} wrote no pid file in {PID_FILE_TIMEOUT_S} s\n{log_tails([daemon])}")
        time.sleep(0.1)


def running_pid(daemon: Daemon) -> int | None:
    """The pid in the daemon's pid file, if that process is alive and is that daemon (not a reused pid)."""
    try:
        pid = int(daemon.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_alive(pid, daemon.name) else None


def is_alive(pid: int, name: str) -> bool:
    """Whether process `pid` runs the command `name` and has not exited (a zombie waits for init to reap it)."""
    try:
        status_line = Path(f"/proc/{pid}/stat").read_text()  # "pid (command) state ..."
    except OSError:
        return False
    command_end = status_line.rindex(")")
    command, state = status_line[status_line.index("(") + 1:command_end], status_line[command_end + 2]
    return command == name[:15] and state != "Z"


def stop_daemon(daemon: Daemon) -> None:
    """SIGTERM through the pid file, then SIGKILL if it is still alive after STOP_TIMEOUT_S. Waits on the process,
    not the pid file, which slurmd removes before it has finished shutting down."""
    pid = running_pid(daemon)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while is_alive(pid, daemon.name):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.1)


def cancel_all_jobs(tools: dict[str, str]) -> None:
    """Cancel every queued or running job and wait until they are gone, so no slurmstepd outlives slurmd."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        queue = subprocess.run([tools["squeue"], "-h", "-o", "%i"], capture_output=True, text=True)
        job_ids = queue.stdout.split()
        if queue.returncode != 0 or not job_ids:
            return
        subprocess.run([tools["scancel"], *job_ids], capture_output=True)
        time.sleep(0.2)


def wait_until_idle(tools: dict[str, str], node: str, daemons: list[Daemon]) -> None:
    """Poll sinfo until the node is idle, resuming it if it registered drained or down."""
    deadline = time.monotonic() + START_TIMEOUT_S
    state = "unknown"
    while time.monotonic() < deadline:
        state = subprocess.run([tools["sinfo"], "-h", "-n", node, "-o", "%t"], capture_output=True,
                               text=True).stdout.strip()
        if state == "idle":
            return
        if state in ("drain", "drained", "down"):
            subprocess.run([tools["scontrol"], "update", f"nodename={node}", "state=resume"], capture_output=True)
        dead = [daemon.name for daemon in daemons if running_pid(daemon) is None]
        if dead:
            raise SlurmUnavailable(f"{', '.join(dead)} died while starting\n{log_tails(daemons)}")
        time.sleep(0.5)
    raise SlurmUnavailable(f"node {node} not idle after {START_TIMEOUT_S} s (state {state!r})\n{log_tails(daemons)}")


def log_tails(daemons: list[Daemon]) -> str:
    parts = []
    for daemon in daemons:
        for file in (daemon.stderr_file, daemon.log_file):
            if file.exists() and file.stat().st_size:
                tail = file.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                parts.append(f"--- {file}\n" + "\n".join(tail))
    return "\n".join(parts)
