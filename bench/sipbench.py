#!/usr/bin/env python3
"""sipforge benchmark: sipforge against Kamailio 5.6 (and a naive UDP relay).

Commands (run from anywhere; see bench/README.md):

  bench/run [OPTIONS]            CPU per call at a fixed rate, then the highest
                                 rate with zero failed calls, for every system
                                 and scenario; prints sipforge/Kamailio last
  bench/run memory [OPTIONS]     memory per live INVITE transaction
  bench/run rebuild [OPTIONS]    time from a routes file edit to a new binary
  bench/run setup                install the tools and build, nothing else

Python 3.11, standard library only. Every process it starts runs under
`timeout` and in its own process group, and is stopped on exit.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# CARGO_TARGET_DIR of the sipforge builds: target/bench, or the caller's
# CARGO_TARGET_DIR when one is set (e.g. a worktree that must not share the
# main checkout's target directory).
_TARGET_ENV = os.environ.get("CARGO_TARGET_DIR")
TARGET = Path(_TARGET_ENV).resolve() if _TARGET_ENV else ROOT / "target" / "bench"
BIN_DIR = TARGET / "bin"                      # one copied binary per routes file
NAIVE_MANIFEST = BENCH / "naive-relay" / "Cargo.toml"
NAIVE_TARGET = TARGET / "naive-relay" if _TARGET_ENV else BENCH / "naive-relay" / "target"
NAIVE_BIN = NAIVE_TARGET / "release" / "naive-relay"

HOST = "127.0.0.1"
PROXY_PORT = 5060
UAC_PORT = 5070
UAS1_PORT = 5080
UAS2_PORT = 5090
BUFFER = 1 << 20                              # 1 MiB socket buffers everywhere
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Scenario (d) `auth`: the one user (the sipp UAC's From user, which both
# proxies require the credentials to name), realm and bench-only password.
AUTH_USER = "sipp"
AUTH_REALM = "sipforge.bench"
AUTH_PASSWORD = "bench-password"

SCENARIOS = {
    # name: sipp UAS (port, scenario file) list, tail after the last call
    # (seconds of deferred work counted), log lines per call expected.
    # Optional: "uac" (sipp UAC scenario, default uac.xml), "uac_args",
    # "transport" (udp), "routes" (the name of the routes file in
    # bench/routes/ and of the Kamailio config in bench/kamailio/, default
    # the scenario's name), "trying" (a stateful proxy answers each INVITE
    # with 100 Trying: checked; default True), "register_first" (register
    # the callees' AoRs before the timed calls, see preregister()),
    # "uas_answers_all" (the run is clean only if the UAS completed every
    # call).
    "seed_stateless": {
        "uas": [(UAS1_PORT, "uas.xml")],
        "tail": 2.0,
        "lines_per_call": 6,
        "trying": False,
        "title": "(a) seed, stateless",
    },
    "stateful": {
        "uas": [(UAS1_PORT, "uas.xml")],
        # Deferred work: Kamailio frees a transaction 5 s after it ends,
        # sipforge after RFC 6026's Timer L/M/J (64*T1 = 32 s, + 1 s slack).
        # Idle, Kamailio takes ~1.3 ms of CPU a second (0.13 tick/s) and
        # sipforge ~0.35 ms since its receive threads sleep when idle
        # (before 23418fd they woke 40 times a second: ~5 ms/s, 0.17 s of
        # the tail, ~20 us per call at 8,000 calls).
        "tail": 34.0,
        "lines_per_call": 6,
        "title": "(b) stateful relay",
    },
    "reroute_404": {
        "uas": [(UAS1_PORT, "uas_404.xml"), (UAS2_PORT, "uas.xml")],
        "tail": 34.0,
        "lines_per_call": 7,
        "title": "(c) stateful, 404 rerouted",
    },
    "auth": {
        # As stateful, but every call is challenged: INVITE / 407 / ACK,
        # then the INVITE with credentials (two INVITE transactions per
        # call). sipforge gets --credentials (written into the output
        # directory), sipp -au/-ap.
        "uac": "uac_auth.xml",
        "uac_args": ["-au", AUTH_USER, "-ap", AUTH_PASSWORD],
        "uas": [(UAS1_PORT, "uas.xml")],
        "tail": 34.0,
        "lines_per_call": 7,
        "title": "(d) stateful, authenticated",
    },
    "tcp": {
        # As stateful, over TCP both sides: the proxies listen on TCP only,
        # sipp UAC and UAS run with -t t1 (one connection each), the proxy
        # opens one to the UAS (the routes' target says ;transport=tcp).
        # Kamailio gets -N (TCP workers) as it gets -n. No naive relay (UDP).
        "transport": "tcp",
        "uas": [(UAS1_PORT, "uas.xml")],
        "tail": 34.0,
        "lines_per_call": 6,
        "title": "(e) stateful relay over TCP",
    },
    "register": {
        # Registrar (issue 14): REGISTERs for distinct AoRs
        # (sip:userN@bench.test, Expires 3600), each answered 200 by the
        # proxy's registrar (sipforge `save`, Kamailio save("location"),
        # usrloc in memory); no UAS. A "call" is one REGISTER transaction.
        # Both proxies answer statelessly and keep no transaction, so the
        # tail is the stateless one.
        "routes": "registrar",
        "uac": "uac_register.xml",
        "uas": [],
        "tail": 2.0,
        "lines_per_call": 1,
        "trying": False,
        "title": "(f) REGISTER (per REGISTER)",
    },
    "invite_registered": {
        # Calls to registered users (issue 14): first the AoRs user1..userN
        # are registered with the UAS's address as contact (from the UAS's
        # port, before the UAS starts; not timed, see preregister()), then
        # the UAC calls sip:userN@bench.test through the proxy: lookup +
        # record-routed stateful relay (sipforge `lookup` + `relay`,
        # Kamailio lookup("location") + t_relay()). As (b) otherwise.
        "routes": "registrar",
        "uac": "uac_registered.xml",
        "register_first": True,
        "uas": [(UAS1_PORT, "uas.xml")],
        "uas_answers_all": True,
        "tail": 34.0,
        "lines_per_call": 6,
        "title": "(g) call to a registered user",
    },
}
SYSTEMS = ["naive", "kamailio", "sipforge"]
SYSTEM_TITLES = {"naive": "naive relay", "kamailio": "Kamailio 5.6", "sipforge": "sipforge",
                 "baseline": "sipforge at the baseline"}   # retitled by --baseline REV
LOG_MARKERS = ("Received ", "Got a reply")

# Goals from the issue (sipforge against Kamailio, tuned).
CPU_GOALS = {"seed_stateless": 0.65, "stateful": 0.60, "reroute_404": 0.60, "auth": 0.60,
             "tcp": 0.60, "register": 0.60, "invite_registered": 0.60}
RATE_GOALS = {"seed_stateless": 12_000, "stateful": 9_000}
MEMORY_GOAL_BYTES = 4096
REBUILD_GOAL_S = 20.0


def routes_of(scenario: str) -> str:
    """The routes file (bench/routes/NAME.yaml) and Kamailio config
    (bench/kamailio/NAME.cfg) of a scenario: its own name unless it shares
    another's."""
    return SCENARIOS.get(scenario, {}).get("routes", scenario)


def expects_trying(scenario: str) -> bool:
    """A stateful proxy answers each INVITE of the scenario with 100 Trying."""
    return SCENARIOS.get(scenario, {}).get("trying", True)


# --------------------------------------------------------------------------
# Output helpers

def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def fail(message: str) -> "NoReturn":  # noqa: F821
    say(f"bench: error: {message}")
    raise SystemExit(2)


class Unavailable(Exception):
    """A system cannot be run (e.g. sipforge does not build yet)."""


# --------------------------------------------------------------------------
# Processes: every one in its own group, under `timeout`, stopped on exit

_children: list[subprocess.Popen] = []


def spawn(cmd: list[str], *, lifetime: float, out: Path, env: dict | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start cmd under `timeout` (it stops by itself after `lifetime` s)."""
    full = ["timeout", "--kill-after=5", f"{int(lifetime)}s", *map(str, cmd)]
    handle = open(out, "ab")
    try:
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=handle,
                                stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
    finally:
        handle.close()
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL it if it does not end in time."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left of the group (e.g. forked children of a dead parent).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(2)
    except subprocess.TimeoutExpired:
        pass
    if proc in _children:
        _children.remove(proc)


def _cleanup() -> None:
    for proc in list(_children):
        stop(proc, timeout=2)


def _on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


atexit.register(_cleanup)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def run_logged(cmd: list[str], log: Path, *, env: dict | None = None, cwd: Path | None = None,
               timeout: float = 3600) -> int:
    with open(log, "ab") as handle:
        handle.write(f"\n$ {' '.join(map(str, cmd))}\n".encode())
        handle.flush()
        try:
            return subprocess.run(list(map(str, cmd)), stdin=subprocess.DEVNULL, stdout=handle,
                                  stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            handle.write(b"\n(timed out)\n")
            return 124


def tail_of(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no output)"
    return "\n".join("    " + line for line in text[-lines:])


# --------------------------------------------------------------------------
# /proc: CPU of a process tree, memory, UDP ports

def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after "(comm)"; comm may contain spaces or parentheses.
    return text[text.rfind(")") + 2:].split()


def descendants(root: int) -> list[int]:
    """root and every process below it (children are found by ppid)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def steal_ticks() -> int:
    """Ticks the host's hypervisor ran something else while this virtual
    machine's CPUs wanted to run (the `steal` column of /proc/stat, all
    CPUs summed); 0 where the kernel does not count it."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) if len(fields) > 8 else 0
    except (OSError, ValueError):
        return 0


def tree_cpu_ticks(root: int) -> int:
    """utime+stime (+cutime+cstime) summed over the process tree.

    The /proc/PID/stat line of a process already totals all its threads,
    those still running and those that have exited; cutime/cstime carry
    the time of reaped children, so a process of the tree that ends inside
    the window is still counted (through its parent)."""
    total = 0
    for pid in descendants(root):
        fields = _stat_fields(pid)
        if fields:
            total += sum(int(v) for v in fields[11:15])
    return total


def task_cpu_ticks(pid: int) -> int:
    """Sum over /proc/PID/task/*/stat (live threads only): a cross-check."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total


def threads_consistent(root: int) -> bool:
    """Cross-check: the live threads of each process of the tree never add up
    to more than its /proc/PID/stat total (2 ticks of rounding allowed)."""
    for pid in descendants(root):
        fields = _stat_fields(pid)
        if fields and task_cpu_ticks(pid) > int(fields[11]) + int(fields[12]) + 2:
            return False
    return True


def tree_memory(root: int) -> dict[str, int]:
    """Pss and Rss (bytes) summed over the tree. Pss shares shared pages
    (Kamailio's shm) out among the processes mapping them, so its sum
    counts each page once."""
    pss = rss = 0
    for pid in descendants(root):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            if name == "Pss":
                pss += int(rest.split()[0]) * 1024
            elif name == "Rss":
                rss += int(rest.split()[0]) * 1024
    return {"pss": pss, "rss": rss}


def bound_udp_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local = line.split()[1]
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def listening_tcp_ports() -> set[int]:
    """TCP ports with a socket in LISTEN (state 0A)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def bound_ports(transport: str) -> set[int]:
    return listening_tcp_ports() if transport == "tcp" else bound_udp_ports()


def port_free(port: int, transport: str = "udp") -> bool:
    if transport == "tcp":
        # SO_REUSEADDR: connections of an earlier run left in TIME_WAIT do
        # not count (every TCP listener of the bench binds with it), a
        # listener or another bound socket does.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def port_owner(port: int, transport: str = "udp") -> str:
    flag = "-t" if transport == "tcp" else "-u"
    try:
        out = subprocess.run(["ss", "-H", flag, "-a", "-n", "-p", f"sport = :{port}"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return out or f"(unknown owner; try `ss {flag}anp`)"


def require_ports_free(ports: list[int], wait: float = 5.0, transport: str = "udp") -> None:
    deadline = time.monotonic() + wait
    while True:
        busy = [p for p in ports if not port_free(p, transport)]
        if not busy:
            return
        if time.monotonic() > deadline:
            lines = "\n".join(f"  {transport} {HOST}:{p}: {port_owner(p, transport)}" for p in busy)
            fail(f"the bench uses fixed {transport.upper()} ports on 127.0.0.1 and these are taken:\n"
                 f"{lines}\nStop whatever holds them (the bench must run alone) and retry.")
        time.sleep(0.2)


def wait_bound(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 20.0,
               transport: str = "udp") -> None:
    """Wait for a UDP socket bound on port (transport tcp: a TCP listener)."""
    deadline = time.monotonic() + timeout
    while port not in bound_ports(transport):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited (status {proc.returncode}) before binding "
                               f"{transport}:{HOST}:{port}; its output ({log}):\n{tail_of(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not bind {transport}:{HOST}:{port} within {timeout:.0f} s; "
                               f"its output ({log}):\n{tail_of(log)}")
        time.sleep(0.05)


# --------------------------------------------------------------------------
# Setup: tools and builds

def ensure_tools(install: bool) -> None:
    missing = [tool for tool in ("kamailio", "sipp") if shutil.which(tool) is None]
    for tool in ("cargo", "timeout"):
        if shutil.which(tool) is None:
            fail(f"`{tool}` is not installed")
    if missing and install:
        say(f"bench: installing {', '.join(missing)} (apt-get install kamailio sip-tester)")
        if os.geteuid() != 0:
            fail("installing packages needs root: run `apt-get install -y kamailio sip-tester`")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        # Keep the package's own kamailio service from starting on 5060.
        policy = Path("/usr/sbin/policy-rc.d")
        made_policy = False
        if not policy.exists():
            policy.write_text("#!/bin/sh\n# written by sipforge bench/run during apt-get install\nexit 101\n")
            policy.chmod(0o755)
            made_policy = True
        try:
            for cmd in (["apt-get", "update"],
                        ["apt-get", "install", "-y", "kamailio", "sip-tester"]):
                if subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL).returncode != 0:
                    fail(f"`{' '.join(cmd)}` failed")
        finally:
            if made_policy:
                policy.unlink(missing_ok=True)
        missing = [tool for tool in ("kamailio", "sipp") if shutil.which(tool) is None]
    if missing:
        fail(f"not installed: {', '.join(missing)} (apt-get install -y kamailio sip-tester)")
    version = subprocess.run(["kamailio", "-v"], capture_output=True, text=True).stdout
    if "kamailio 5.6" not in version:
        say(f"bench: warning: expected Kamailio 5.6, found: {version.splitlines()[0] if version else '?'}")


def build_naive(out: Path) -> Path:
    log = out / "build-naive-relay.log"
    env = dict(os.environ, CARGO_TARGET_DIR=str(NAIVE_TARGET))
    rc = run_logged(["cargo", "build", "--release", "--manifest-path", NAIVE_MANIFEST], log, env=env)
    if rc != 0:
        fail(f"the naive relay does not build; see {log}:\n{tail_of(log)}")
    return NAIVE_BIN


def sipforge_binary(scenario: str) -> Path:
    return BIN_DIR / f"sipforge-{routes_of(scenario)}"


def build_sipforge(scenarios: list[str], out: Path) -> dict[str, Path]:
    """One release build per routes file (scenarios that share one share the
    binary), binaries copied out of the shared target dir. Raises
    Unavailable when sipforge does not build."""
    built = {}
    by_routes: dict[str, Path] = {}
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    for scenario in scenarios:
        name = routes_of(scenario)
        if name in by_routes:
            built[scenario] = by_routes[name]
            continue
        routes = BENCH / "routes" / f"{name}.yaml"
        log = out / f"build-sipforge-{name}.log"
        env = dict(os.environ, SIPFORGE_ROUTES=str(routes), CARGO_TARGET_DIR=str(TARGET))
        say(f"bench: building sipforge (release) with {routes.relative_to(ROOT)}")
        started = time.monotonic()
        rc = run_logged(["cargo", "build", "--release", "--bin", "sipforge"], log, env=env, cwd=ROOT)
        if rc != 0:
            raise Unavailable(f"`cargo build --release` failed with {routes.name} "
                              f"(log: {log}):\n{tail_of(log, 12)}")
        binary = sipforge_binary(scenario)
        shutil.copy2(TARGET / "release" / "sipforge", binary)
        embedded = subprocess.run([binary, "--print-routes"], capture_output=True, text=True)
        if embedded.returncode != 0 or embedded.stdout != routes.read_text():
            raise Unavailable(f"{binary} does not embed {routes} (--print-routes differs): "
                              "is SIPFORGE_ROUTES honoured by build.rs?")
        shown = binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary
        say(f"bench:   -> {shown} ({time.monotonic() - started:.0f} s)")
        built[scenario] = by_routes[name] = binary
    return built


def build_baseline(rev: str, scenarios: list[str], out: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """sipforge as it was at git revision `rev`, built with today's bench
    routes files: the binaries per scenario, and why a scenario has none
    (its routes use what `rev` did not have yet). The source is exported
    with `git archive` (no worktree left behind) into
    TARGET/baseline-SHA/, which also holds the build and the binaries, so a
    second run with the same revision builds nothing."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                         capture_output=True, text=True)
    if sha.returncode != 0:
        fail(f"--baseline {rev}: not a commit of this repository: {sha.stderr.strip()}")
    sha = sha.stdout.strip()
    home = TARGET / f"baseline-{sha[:12]}"
    src, bins = home / "src", home / "bin"
    if not (src / "Cargo.toml").exists():
        src.mkdir(parents=True, exist_ok=True)
        archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", sha], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            fail(f"--baseline {rev}: git archive failed")
    bins.mkdir(parents=True, exist_ok=True)
    built, missing, failed = {}, {}, set()
    for scenario in scenarios:
        name = routes_of(scenario)
        binary = bins / f"sipforge-{name}"
        if not binary.exists() and name not in failed:
            log = out / f"build-baseline-{name}.log"
            env = dict(os.environ, SIPFORGE_ROUTES=str(BENCH / "routes" / f"{name}.yaml"),
                       CARGO_TARGET_DIR=str(home / "target"))
            say(f"bench: building sipforge at {sha[:12]} (release) with bench/routes/{name}.yaml")
            if run_logged(["cargo", "build", "--release", "--bin", "sipforge"], log, env=env, cwd=src) == 0:
                shutil.copy2(home / "target" / "release" / "sipforge", binary)
            else:
                failed.add(name)
        if binary.exists():
            built[scenario] = binary
        else:
            missing[scenario] = f"does not build at {sha[:12]} with bench/routes/{name}.yaml"
    return built, missing


# --------------------------------------------------------------------------
# Proxies and sipp

class Proxy:
    """One system under test, started for one run."""

    def __init__(self, system: str, scenario: str, ctx: "Context", run_dir: Path, lifetime: float):
        self.system, self.scenario = system, scenario
        self.log = run_dir / f"{system}.log"
        transport = SCENARIOS[scenario].get("transport", "udp") if scenario in SCENARIOS else "udp"
        logging_on = ctx.args.logging == "on"
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        if system == "naive":
            cmd = [ctx.naive_bin, "--listen", f"{HOST}:{PROXY_PORT}",
                   "--uas", f"{HOST}:{UAS1_PORT}", "--rcvbuf", str(BUFFER)]
        elif system == "kamailio":
            rundir = run_dir / "kamailio-run"
            rundir.mkdir(exist_ok=True)
            cmd = ["kamailio", "-f", BENCH / "kamailio" / f"{routes_of(scenario)}.cfg",
                   "-DD", "-E",                       # foreground, log to stderr
                   "-x", "tlsf",                      # the fast shm allocator
                   "-m", str(ctx.args.kamailio_shm),  # shm MB
                   "-b", str(BUFFER),                 # receive buffer probe limit
                   "-n", str(ctx.args.kamailio_children),
                   "-Y", rundir, "-w", rundir]
            if transport == "tcp":
                cmd += ["-N", str(ctx.args.kamailio_children)]   # TCP workers, as -n
            if not logging_on:
                cmd += ["-A", "LOG_OFF"]
        elif system in ("sipforge", "baseline"):
            bins = ctx.sipforge_bins if system == "sipforge" else ctx.baseline_bins
            binary = bins.get(scenario)
            if binary is None:
                raise Unavailable(ctx.sipforge_reason or f"{system} was not built")
            cmd = [binary, "--log-level", "info" if logging_on else "warn"]
            if scenario == "auth":
                cmd += ["--credentials", ctx.credentials()]
            cmd += shlex.split(ctx.args.sipforge_args)
        else:
            raise ValueError(system)
        self.proc = spawn(pinned("proxy", cmd), lifetime=lifetime, out=self.log, env=env)
        try:
            wait_bound(PROXY_PORT, self.proc, SYSTEM_TITLES[system], self.log,
                       transport=transport)
        except RuntimeError:
            stop(self.proc)
            raise
        time.sleep(0.7)  # let Kamailio fork its workers
        if self.proc.poll() is not None:
            raise RuntimeError(f"{system} exited right after start:\n{tail_of(self.log)}")

    def cpu_ticks(self) -> int:
        return tree_cpu_ticks(self.proc.pid)

    def memory(self) -> dict[str, int]:
        return tree_memory(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_lines(self) -> int:
        count = 0
        try:
            with open(self.log, "rb") as handle:
                for line in handle:
                    if b"Received " in line or b"Got a reply" in line:
                        count += 1
        except OSError:
            pass
        return count

    def stop(self) -> None:
        stop(self.proc)


def read_sipp_stats(path: Path) -> dict[str, str]:
    """The last line of a sipp -trace_stat CSV, by column name."""
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    names = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(names, values))


def screen_count(screen: Path, label: str) -> int | None:
    """Messages column of the last sipp screen line `label <----...` (e.g. 100)."""
    found = None
    try:
        for line in screen.read_text(errors="replace").splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == label and words[1].startswith("<---"):
                counts = [w for w in words[2:] if w.isdigit()]
                if counts:
                    found = int(counts[0])
    except OSError:
        return None
    return found


def stat_int(stats: dict[str, str], name: str) -> int:
    try:
        return int(stats.get(name, "0") or 0)
    except ValueError:
        return 0


# `taskset -c LIST` prefixes for the proxies and for sipp (--proxy-cpus,
# --sipp-cpus); empty: no pinning.
PIN: dict[str, list[str]] = {"proxy": [], "sipp": []}


def pinned(who: str, cmd: list) -> list:
    return [*PIN[who], *cmd]


def sipp_transport(transport: str) -> list[str]:
    """sipp's transport flags: UDP (its default, one socket) or TCP with one
    connection (-t t1)."""
    return ["-t", "t1"] if transport == "tcp" else []


def start_uas(port: int, scenario_file: str, run_dir: Path, lifetime: float,
              extra: list[str] | None = None,
              transport: str = "udp") -> tuple[subprocess.Popen, Path, Path]:
    stats = run_dir / f"uas-{port}.csv"
    out = run_dir / f"uas-{port}.out"
    cmd = ["sipp", "-sf", BENCH / "sipp" / scenario_file, "-i", HOST, "-p", str(port),
           "-buff_size", str(BUFFER), "-nd", "-trace_stat", "-stf", stats, "-fd", "1",
           "-timeout", str(int(lifetime)), *sipp_transport(transport), *(extra or [])]
    proc = spawn(pinned("sipp", cmd), lifetime=lifetime + 10, out=out)
    wait_bound(port, proc, f"sipp UAS on {port}", out, transport=transport)
    return proc, stats, out


def run_uac(scenario_file: str, calls: int, rate: int, run_dir: Path, *, recv_timeout_ms: int,
            limit: int, extra: list[str] | None = None, background: bool = False,
            transport: str = "udp", port: int = UAC_PORT, name: str = "uac"):
    """Run the sipp UAC to the end (or start it, with background=True), from
    `port`, its files named `name`.csv / `name`.out in run_dir.
    Returns (exit code, CPU seconds of sipp, wall seconds, stats path)."""
    stats = run_dir / f"{name}.csv"
    out = run_dir / f"{name}.out"
    nominal = calls / rate
    lifetime = nominal + recv_timeout_ms / 1000 * 3 + 30
    cmd = ["sipp", "-sf", BENCH / "sipp" / scenario_file, f"{HOST}:{PROXY_PORT}",
           "-i", HOST, "-p", str(port), "-s", "bench",
           "-m", str(calls), "-r", str(rate), "-rp", "1000", "-l", str(limit),
           "-buff_size", str(BUFFER), "-nd", "-recv_timeout", str(recv_timeout_ms),
           "-timeout", str(int(lifetime)), "-trace_stat", "-stf", stats, "-fd", "1",
           *sipp_transport(transport), *(extra or [])]
    proc = spawn(pinned("sipp", cmd), lifetime=lifetime + 10, out=out)
    if background:
        return proc, stats
    started = time.monotonic()
    deadline = started + lifetime + 20
    status, usage = None, None
    while status is None:
        pid, raw, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            status, usage = raw, ru
            break
        if time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"sipp UAC did not end; see {out}")
        time.sleep(0.02)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    # sipp runs under `timeout`, whose rusage covers its waited-for child.
    sipp_cpu = usage.ru_utime + usage.ru_stime
    stop(proc)
    return proc.returncode, sipp_cpu, wall, stats


# --------------------------------------------------------------------------
# One measured run

class Context:
    def __init__(self, args: argparse.Namespace, out: Path):
        self.args = args
        self.out = out
        self.naive_bin: Path | None = None
        self.sipforge_bins: dict[str, Path] = {}
        self.sipforge_reason: str | None = None
        # --baseline: sipforge at an earlier revision, per scenario.
        self.baseline_bins: dict[str, Path] = {}
        self.baseline_reasons: dict[str, str] = {}
        self.run_seq = 0
        self.broken: dict[tuple[str, str], str] = {}
        # CPU runs measured again because the host stole too much (--max-steal).
        self.stolen_runs: list[dict] = []
        self.results_file = out / "runs.jsonl"
        self._credentials: Path | None = None

    def credentials(self) -> Path:
        """The credentials file of scenario (d), written once into the output
        directory: `user:realm:HA1` (htdigest), HA1 = MD5(user:realm:password).
        Kamailio's auth.cfg carries the same HA1 (checked here)."""
        if self._credentials is None:
            ha1 = auth_ha1()
            path = self.out / "auth.users"
            path.write_text(f"{AUTH_USER}:{AUTH_REALM}:{ha1}\n")
            self._credentials = path.resolve()
        return self._credentials

    def run_dir(self, label: str) -> Path:
        self.run_seq += 1
        path = self.out / "runs" / f"{self.run_seq:04d}-{label}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, result: dict) -> None:
        with open(self.results_file, "a") as handle:
            handle.write(json.dumps(result) + "\n")


def measure(ctx: Context, system: str, scenario: str, calls: int, rate: int, *,
            tail: float, purpose: str, rep: int) -> dict:
    """Start the proxy and the UAS(es), push `calls` calls at `rate` cps
    through, and measure the proxy's CPU from just before the first call to
    `tail` seconds after the last one."""
    spec = SCENARIOS[scenario]
    transport = spec.get("transport", "udp")
    ports = [PROXY_PORT, UAC_PORT] + [port for port, _ in spec["uas"]]
    require_ports_free(ports, transport=transport)
    run_dir = ctx.run_dir(f"{purpose}-{scenario}-{system}-{rate}")
    recv_timeout_ms = ctx.args.recv_timeout_ms
    lifetime = calls / rate + recv_timeout_ms / 1000 * 3 + tail + 60
    if spec.get("register_first"):
        lifetime += (calls / min(rate, REGISTER_RATE_CAP) + recv_timeout_ms / 1000 * 3
                     + REGISTER_SETTLE_S + 10)
    limit = max(5000, rate * (recv_timeout_ms // 1000 + 2))
    result = {"system": system, "scenario": scenario, "purpose": purpose, "rep": rep,
              "run_dir": str(run_dir.relative_to(ctx.out)),
              "rate": rate, "calls": calls, "logging": ctx.args.logging,
              "time": datetime.datetime.now().isoformat(timespec="seconds")}
    try:
        proxy = Proxy(system, scenario, ctx, run_dir, lifetime)
    except (RuntimeError, Unavailable) as e:
        say(f"bench: {system} could not start for {scenario}: {e}")
        result.update({"error": str(e), "successful": 0, "failed": calls, "uas_failed": 0,
                       "uas_successful": 0, "retransmissions": 0, "proxy_alive": False,
                       "wall_s": 0.0, "sipp_uac_cpu_s": 0.0, "sipp_uas_cpu_s": 0.0,
                       "sipp_us_per_call": None, "cpu_s": 0.0, "us_per_call": None,
                       "log_lines_per_call": None, "trying_per_call": None, "clean": False})
        ctx.record(result)
        return result
    uases = []
    registration = None
    try:
        if spec.get("register_first"):
            registration = preregister(proxy, calls, rate, run_dir,
                                       recv_timeout_ms=recv_timeout_ms, limit=limit)
            result["registration"] = registration
        for port, scenario_file in spec["uas"]:
            uases.append(start_uas(port, scenario_file, run_dir, lifetime, transport=transport))
        time.sleep(0.3)
        # The timed part starts here: the proxy's CPU and log lines so far
        # (the registrations of register_first included) are left out.
        before = proxy.cpu_ticks()
        stolen_before, window_start = steal_ticks(), time.monotonic()
        lines_before = proxy.log_lines()
        uas_before = sum(tree_cpu_ticks(proc.pid) for proc, _, _ in uases)
        rc, sipp_cpu, wall, uac_stats = run_uac(
            spec.get("uac", "uac.xml"), calls, rate, run_dir, recv_timeout_ms=recv_timeout_ms,
            limit=limit, extra=spec.get("uac_args"), transport=transport)
        # The UASes' CPU over the UAC's lifetime (their share of the machine).
        uas_cpu = (sum(tree_cpu_ticks(proc.pid) for proc, _, _ in uases) - uas_before) / CLK_TCK
        time.sleep(tail)
        after = proxy.cpu_ticks()
        stolen = steal_ticks() - stolen_before
        window = time.monotonic() - window_start
        threads_ok = threads_consistent(proxy.proc.pid)
        alive = proxy.alive()
        uas_failed = uas_calls = 0
        for proc, stats, _ in uases:
            stop(proc)
            st = read_sipp_stats(stats)
            uas_failed += stat_int(st, "FailedCall(C)")
            uas_calls += stat_int(st, "SuccessfulCall(C)")
            result.setdefault("uas_retransmissions", 0)
            result["uas_retransmissions"] += stat_int(st, "Retransmissions(C)")
    finally:
        for proc, _, _ in uases:
            stop(proc)
        proxy.stop()
    st = read_sipp_stats(uac_stats)
    trying = screen_count(run_dir / "uac.out", "100")
    ok = stat_int(st, "SuccessfulCall(C)")
    failed = stat_int(st, "FailedCall(C)")
    cpu_s = (after - before) / CLK_TCK
    lines = proxy.log_lines() - lines_before
    result.update({
        "sipp_rc": rc, "successful": ok, "failed": failed,
        "uas_failed": uas_failed, "uas_successful": uas_calls,
        "retransmissions": stat_int(st, "Retransmissions(C)"),
        "proxy_alive": alive, "wall_s": round(wall, 3), "sipp_uac_cpu_s": round(sipp_cpu, 3),
        "sipp_uas_cpu_s": round(uas_cpu, 3),
        # sipp's own CPU per call (UAC + UASes): what the load generator
        # takes from the same two cores the proxy runs on.
        "sipp_us_per_call": round((sipp_cpu + uas_cpu) * 1e6 / ok, 1) if ok else None,
        "cpu_s": cpu_s, "us_per_call": cpu_s * 1e6 / ok if ok else None,
        "log_lines_per_call": round(lines / ok, 3) if ok else None,
        "tail_s": tail, "threads_consistent": threads_ok,
        # The share of the machine's CPU time the host took during the
        # timed window: a proxy that wants a CPU then waits, and its work
        # costs more (cold caches, migrations); see bench/README.md.
        "steal_ticks": stolen,
        "steal_pct": round(100 * stolen / (window * (os.cpu_count() or 1) * CLK_TCK), 2)
        if window > 0 else 0.0,
        # A stateful proxy answers each INVITE with 100 Trying itself.
        "trying_per_call": round(trying / calls, 3) if trying is not None else None,
    })
    result["clean"] = (alive and failed == 0 and uas_failed == 0 and ok == calls)
    if registration is not None and not (registration["successful"] == calls
                                         and registration["failed"] == 0):
        result["clean"] = False
    if spec.get("uas_answers_all") and uas_calls != calls:
        # Every call must really have reached the UAS (and ended there).
        result["clean"] = False
    if not ctx.args.keep_logs:
        # Keep the head of a big log (a sample of the lines), drop the rest.
        try:
            if proxy.log.stat().st_size > 1 << 20:
                with open(proxy.log, "rb") as handle:
                    head = [handle.readline() for _ in range(200)]
                proxy.log.with_suffix(".head.log").write_bytes(b"".join(head))
                proxy.log.unlink()
        except OSError:
            pass
    ctx.record(result)
    return result


# After the registrations of register_first, before the UAS starts: both
# proxies answer REGISTER statelessly (no transaction to expire), so a short
# pause is all that is left between the two phases.
REGISTER_SETTLE_S = 1.0
# The registrations of register_first go at the calls' rate up to this
# (REGISTERs per second): a rate search then finds the calls' limit, not the
# registrar's at the same rate ((f) `register` measures that one).
REGISTER_RATE_CAP = 2000


def preregister(proxy: Proxy, calls: int, rate: int, run_dir: Path, *, recv_timeout_ms: int,
                limit: int) -> dict:
    """Register the callees of a register_first scenario: `calls` REGISTERs
    (uac_register.xml: AoRs user1..userN, the same numbering the calls use)
    at `rate` (at most REGISTER_RATE_CAP per second), sent from the UAS's port so that every contact and every
    source address is the UAS's; sipp exits and frees the port before the
    UAS starts. The proxy's CPU for it (to REGISTER_SETTLE_S after the last
    one) is recorded apart, as a cross-check of scenario (f); it is not in
    the timed call figure."""
    before = proxy.cpu_ticks()
    rate = min(rate, REGISTER_RATE_CAP)
    rc, sipp_cpu, wall, stats = run_uac("uac_register.xml", calls, rate, run_dir,
                                        recv_timeout_ms=recv_timeout_ms, limit=limit,
                                        port=UAS1_PORT, name="register")
    time.sleep(REGISTER_SETTLE_S)
    cpu_s = (proxy.cpu_ticks() - before) / CLK_TCK
    require_ports_free([UAS1_PORT])
    st = read_sipp_stats(stats)
    ok = stat_int(st, "SuccessfulCall(C)")
    return {"sipp_rc": rc, "successful": ok, "failed": stat_int(st, "FailedCall(C)"),
            "retransmissions": stat_int(st, "Retransmissions(C)"), "wall_s": round(wall, 3),
            "cpu_s": cpu_s, "us_per_register": cpu_s * 1e6 / ok if ok else None}


def auth_ha1() -> str:
    """HA1 of the bench user, checked against bench/kamailio/auth.cfg so the
    two proxies accept the same password."""
    ha1 = hashlib.md5(f"{AUTH_USER}:{AUTH_REALM}:{AUTH_PASSWORD}".encode()).hexdigest()
    cfg = BENCH / "kamailio" / "auth.cfg"
    if f'"{ha1}"' not in cfg.read_text():
        fail(f"{cfg} does not carry HA1 {ha1} of {AUTH_USER}:{AUTH_REALM}:{AUTH_PASSWORD}")
    return ha1


def describe(r: dict) -> str:
    per_call = f"{r['us_per_call']:.1f} us/call" if r.get("us_per_call") else "-"
    flags = "" if r["clean"] else "  NOT CLEAN"
    if not r["proxy_alive"]:
        flags += " (proxy died)"
    reg = r.get("registration")
    registered = ""
    if reg:
        per_reg = f"{reg['us_per_register']:.1f} us/REGISTER" if reg.get("us_per_register") else "-"
        registered = f"registered {reg['successful']} failed {reg['failed']} ({per_reg}, not timed) "
    return (f"{r['system']:>8} {r['scenario']:<14} {r['rate']:>6} cps x {r['calls']:>6}: "
            f"{registered}ok {r['successful']} uas ok {r.get('uas_successful', 0)} "
            f"failed {r['failed']}+{r['uas_failed']} "
            f"retrans {r['retransmissions']}+{r.get('uas_retransmissions', 0)} "
            f"cpu {r['cpu_s']:.2f} s {per_call} log {r['log_lines_per_call']}/call "
            f"100/call {r['trying_per_call']} wall {r['wall_s']:.1f} s "
            f"sipp {r['sipp_us_per_call'] or 0:.0f} us/call steal {r.get('steal_pct', 0):.1f}%{flags}")


# --------------------------------------------------------------------------
# The main benchmark

def systems_for(scenario: str, systems: list[str]) -> list[str]:
    # The naive relay knows one UAS and no SIP (and only UDP): it is the
    # floor of scenario (a).
    return [s for s in systems if s != "naive" or scenario == "seed_stateless"]


def max_clean_rate(ctx: Context, system: str, scenario: str, rep: int) -> dict:
    """Step up from --search-start by x1.5 until a run fails, then bisect
    down to --search-resolution. Each run lasts --search-duration s."""
    args = ctx.args
    duration = args.search_duration
    runs = []

    def clean(rate: int) -> bool:
        r = measure(ctx, system, scenario, int(rate * duration), rate,
                    tail=0.5, purpose="search", rep=rep)
        runs.append({"rate": rate, "clean": r["clean"], "failed": r["failed"] + r["uas_failed"],
                     "us_per_call": r["us_per_call"], "sipp_us_per_call": r["sipp_us_per_call"],
                     "trying_per_call": r["trying_per_call"]})
        say("bench:   " + describe(r))
        return r["clean"]

    lo, hi = 0, None
    rate = args.search_start
    while rate <= args.search_max:
        if clean(rate):
            lo = rate
            rate = int(round(rate * 1.5 / 250) * 250)
        else:
            hi = rate
            break
    if hi is None:
        return {"max_clean_rate": lo, "capped": True, "runs": runs}
    while hi - lo > args.search_resolution:
        mid = int(round((lo + hi) / 2 / 50) * 50)
        if mid in (lo, hi):
            break
        if clean(mid):
            lo = mid
        else:
            hi = mid
    return {"max_clean_rate": lo, "capped": False, "first_failing": hi, "runs": runs}


def spread(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt_spread(s: dict | None, digits: int = 0, unit: str = "") -> str:
    if not s:
        return "-"
    f = f"{{:.{digits}f}}"
    med, lo, hi = (f.format(s[k]) for k in ("median", "min", "max"))
    return f"{med}{unit} ({lo}..{hi}, n={s['n']})"


def cmd_bench(args: argparse.Namespace) -> int:
    if args.quick:
        args.calls = args.calls or 3000
        args.rate = args.rate or 1000
        args.reps = args.reps or 2
        args.search_reps = args.search_reps if args.search_reps is not None else 1
        args.search_duration = args.search_duration or 2.0
    else:
        args.calls = args.calls or 20_000
        args.rate = args.rate or 1000
        args.reps = args.reps or 5
        args.search_reps = args.search_reps if args.search_reps is not None else 3
        args.search_duration = args.search_duration or 5.0
    scenarios = args.scenarios.split(",")
    systems = args.systems.split(",")
    for name in scenarios:
        if name not in SCENARIOS:
            fail(f"unknown scenario {name} (have {', '.join(SCENARIOS)})")
    for name in systems:
        if name not in SYSTEMS:
            fail(f"unknown system {name} (have {', '.join(SYSTEMS)})")
    if args.baseline:
        systems.append("baseline")

    out = make_out_dir(args)
    ctx = Context(args, out)
    if "auth" in scenarios:
        auth_ha1()   # auth.cfg and the bench user agree, before building anything
    setup(ctx, scenarios, systems)
    require_ports_free([PROXY_PORT, UAC_PORT, UAS1_PORT, UAS2_PORT], wait=0)
    if any(SCENARIOS[s].get("transport") == "tcp" for s in scenarios):
        require_ports_free([PROXY_PORT, UAC_PORT, UAS1_PORT], wait=0, transport="tcp")
    env_info = environment()
    (out / "environment.json").write_text(json.dumps(env_info, indent=2))
    say(f"bench: results in {out}")
    say(f"bench: {env_info['cpu']} x{env_info['cores']}, logging {args.logging}, "
        f"{args.calls} calls at {args.rate} cps x {args.reps} reps; "
        f"rate search {args.search_duration:g} s runs x {args.search_reps} reps")

    active = [s for s in systems if s != "sipforge" or ctx.sipforge_bins]
    if args.baseline:
        for scenario in scenarios:
            if scenario not in ctx.baseline_bins:
                ctx.broken[(scenario, "baseline")] = ctx.baseline_reasons[scenario]
    cpu_runs: dict[tuple[str, str], list[dict]] = {}
    rates: dict[tuple[str, str], list[dict]] = {}
    started = time.monotonic()

    # Smoke test: 50 calls at 50 cps per system and scenario; a combination
    # that fails it is left out (and shown as n/a) instead of wasting runs.
    for scenario in scenarios:
        for system in systems_for(scenario, active):
            if (scenario, system) in ctx.broken:
                continue
            r = measure(ctx, system, scenario, 50, 50, tail=0.2, purpose="smoke", rep=0)
            say("bench: smoke " + describe(r))
            if not r["clean"]:
                ctx.broken[(scenario, system)] = (
                    f"smoke test failed: {r['successful']}/50 calls ok, {r['failed']} failed "
                    f"(run {r['run_dir']})")
                say(f"bench:   LEFT OUT: {system} {scenario}: {ctx.broken[(scenario, system)]}")

    if not args.no_cpu:
        for rep in range(1, args.reps + 1):
            for scenario in scenarios:
                order = [x for x in systems_for(scenario, active) if (scenario, x) not in ctx.broken]
                if not order:
                    continue
                # Rotate the order each repetition: no system always goes first.
                shift = (rep - 1) % len(order)
                for system in order[shift:] + order[:shift]:
                    tail = args.tail if args.tail is not None else SCENARIOS[scenario]["tail"]
                    r = measure(ctx, system, scenario, args.calls, args.rate,
                                tail=tail, purpose="cpu", rep=rep)
                    say(f"bench: cpu rep {rep}/{args.reps} " + describe(r))
                    # A run the host took much of the machine from is
                    # measured again (up to --steal-retries times): the
                    # comparison is between the proxies, not the neighbours.
                    for _ in range(args.steal_retries):
                        if not r["clean"] or r.get("steal_pct", 0) <= args.max_steal:
                            break
                        ctx.stolen_runs.append(r)
                        say(f"bench:   the host took {r['steal_pct']:.1f}% of the CPU during the run "
                            f"(over --max-steal {args.max_steal:g}%): measured again")
                        r = measure(ctx, system, scenario, args.calls, args.rate,
                                    tail=tail, purpose="cpu", rep=rep)
                        say(f"bench: cpu rep {rep}/{args.reps} again " + describe(r))
                    if expects_trying(scenario) and system != "naive" and (r["trying_per_call"] or 0) < 0.9:
                        say(f"bench:   WARNING: {system} sent 100 Trying for {r['trying_per_call']} of the "
                            "INVITEs in a stateful scenario: is it relaying statefully?")
                    cpu_runs.setdefault((scenario, system), []).append(r)

    if not args.no_search:
        for rep in range(1, args.search_reps + 1):
            for scenario in scenarios:
                order = [x for x in systems_for(scenario, active) if (scenario, x) not in ctx.broken]
                if not order:
                    continue
                shift = (rep - 1) % len(order)
                for system in order[shift:] + order[:shift]:
                    say(f"bench: rate search rep {rep}/{args.search_reps}: {system} {scenario}")
                    found = max_clean_rate(ctx, system, scenario, rep)
                    found.update(system=system, scenario=scenario, rep=rep)
                    ctx.record({"purpose": "max_clean_rate", **found})
                    say(f"bench:   => {system} {scenario}: max clean rate {found['max_clean_rate']} cps"
                        + (" (search cap reached)" if found["capped"] else ""))
                    rates.setdefault((scenario, system), []).append(found)

    summary = summarize(ctx, scenarios, systems, cpu_runs, rates, env_info,
                        time.monotonic() - started)
    (out / "summary.md").write_text(summary)
    print(summary)
    return 0


def not_stateful(scenario: str, system: str, runs: list[dict]) -> bool:
    """In the stateful scenarios a stateful proxy sends a 100 Trying per INVITE."""
    if not expects_trying(scenario) or system == "naive" or not runs:
        return False
    trying = spread([r.get("trying_per_call") for r in runs])
    return trying is not None and trying["median"] < 0.9


def summarize(ctx: Context, scenarios, systems, cpu_runs, rates, env_info, elapsed) -> str:
    args = ctx.args
    lines = []
    date = datetime.date.today().isoformat()
    lines.append(f"## Results {date} ({'quick' if args.quick else 'full'} run, {elapsed / 60:.0f} min)")
    lines.append("")
    lines.append(f"Machine: {env_info['cpu']}, {env_info['cores']} cores, kernel {env_info['kernel']}; "
                 f"{env_info['kamailio']}; {env_info['sipp']}; sipforge {env_info['sipforge_commit']}.")
    lines.append(f"Load average (1/5/15 min) at the start: {' '.join(env_info['loadavg'])}, at the end: "
                 f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}.")
    lines.append(f"Logging {args.logging}. CPU: {args.calls} calls at {args.rate} cps, "
                 f"{args.reps} repetitions; rate search: {args.search_duration:g} s runs, "
                 f"{args.search_reps} repetitions. Median (min..max, n).")
    if args.sipforge_args:
        lines.append(f"sipforge started with extra arguments `{args.sipforge_args}`.")
    if args.proxy_cpus or args.sipp_cpus:
        lines.append(f"Pinned: proxies on CPUs {args.proxy_cpus or 'any'}, "
                     f"sipp on CPUs {args.sipp_cpus or 'any'}.")
    lines.append("")
    if not args.no_cpu:
        lines.append(f"CPU per call (µs, proxy process tree, at {args.rate} cps):")
        lines.append("")
        lines.append("| scenario | " + " | ".join(SYSTEM_TITLES[s] for s in systems) + " | clean runs |")
        lines.append("|---|" + "---|" * len(systems) + "---|")
        for scenario in scenarios:
            cells, clean, total = [], 0, 0
            for system in systems:
                runs = cpu_runs.get((scenario, system), [])
                total += len(runs)
                clean += sum(r["clean"] for r in runs)
                cell = fmt_spread(spread([r["us_per_call"] for r in runs if r["clean"]]), 1)
                if not_stateful(scenario, system, runs):
                    cell += " (no 100 Trying: not stateful?)"
                if (scenario, system) in ctx.broken:
                    cell = left_out_cell(ctx, scenario, system)
                cells.append(cell)
            lines.append(f"| {SCENARIOS[scenario]['title']} | " + " | ".join(cells) + f" | {clean}/{total} |")
        kept = [r for runs in cpu_runs.values() for r in runs if "steal_pct" in r]
        if kept:
            lines.append("")
            lines.append(
                f"Host steal time during the kept runs (share of the machine): "
                f"{fmt_spread(spread([r['steal_pct'] for r in kept]), 1, '%')}; "
                f"{len(ctx.stolen_runs)} run(s) measured again for steal over "
                f"{getattr(ctx.args, 'max_steal', 0):g}%"
                + (": " + ", ".join(f"{r['system']}/{r['scenario']} rep {r['rep']} "
                                    f"{r['steal_pct']:.1f}%" for r in ctx.stolen_runs)
                   if ctx.stolen_runs else "") + ".")
        lines.append("")
        lines.append("100 Trying per INVITE received by the UAC (a stateful proxy sends ~1): " + "; ".join(
            f"{sys_}/{sc}: {fmt_spread(spread([r['trying_per_call'] for r in runs]), 2)}"
            for (sc, sys_), runs in sorted(cpu_runs.items()) if expects_trying(sc)))
        lines.append("")
        lines.append("Log lines per call (proxy log file): " + "; ".join(
            f"{sys_}/{sc}: {fmt_spread(spread([r['log_lines_per_call'] for r in runs]), 2)}"
            for (sc, sys_), runs in sorted(cpu_runs.items()) if sys_ != "naive"))
        lines.append("")
        parts = []
        for (sc, sys_), runs in sorted(cpu_runs.items()):
            regs = [r["registration"] for r in runs if r.get("registration")]
            if not regs:
                continue
            answered = sum(r["registration"]["successful"] == r["calls"]
                           and r["registration"]["failed"] == 0
                           for r in runs if r.get("registration"))
            parts.append(f"{sys_}/{sc}: {fmt_spread(spread([g['us_per_register'] for g in regs]), 1)}, "
                         f"all answered 200 in {answered}/{len(regs)} runs")
        if parts:
            lines.append("Registrations before the timed calls (not in the call figures; µs per "
                         "REGISTER, to 1 s after the last): " + "; ".join(parts))
            lines.append("")
        reached = [(sc, sys_, runs) for (sc, sys_), runs in sorted(cpu_runs.items())
                   if SCENARIOS[sc].get("uas_answers_all")]
        if reached:
            lines.append("Calls completed at the UAS (its sipp SuccessfulCall) per call sent: " + "; ".join(
                f"{sys_}/{sc}: {fmt_spread(spread([r.get('uas_successful', 0) / r['calls'] for r in runs]), 3)}"
                for sc, sys_, runs in reached))
            lines.append("")
    if not args.no_search:
        lines.append("Highest rate with zero failed calls (cps):")
        lines.append("")
        lines.append("| scenario | " + " | ".join(SYSTEM_TITLES[s] for s in systems) + " |")
        lines.append("|---|" + "---|" * len(systems))
        for scenario in scenarios:
            cells = []
            for system in systems:
                found = rates.get((scenario, system), [])
                cell = fmt_spread(spread([f["max_clean_rate"] for f in found]))
                if any(f["capped"] for f in found):
                    cell += f" (cap {args.search_max})"
                if not_stateful(scenario, system, [r for f in found for r in f["runs"]]):
                    cell += " (no 100 Trying: not stateful?)"
                if (scenario, system) in ctx.broken:
                    cell = left_out_cell(ctx, scenario, system)
                cells.append(cell)
            lines.append(f"| {SCENARIOS[scenario]['title']} | " + " | ".join(cells) + " |")
        lines.append("")

    if not args.no_search:
        lines.extend(cpu_budget_at_max(scenarios, systems, rates, env_info["cores"]))

    # Ratios last.
    lines.append("sipforge / Kamailio (goals from issues 4, 13, 14 and 15):")
    if "sipforge" not in systems or not ctx.sipforge_bins:
        reason = ctx.sipforge_reason or "sipforge not among --systems"
        lines.append(f"  n/a: sipforge was not measured: {reason.splitlines()[0]}")
    else:
        for scenario in scenarios:
            title = SCENARIOS[scenario]["title"]
            if (scenario, "sipforge") in ctx.broken:
                lines.append(f"  {title}: n/a: sipforge {ctx.broken[(scenario, 'sipforge')]}")
                continue
            if not args.no_cpu:
                sf = cpu_runs.get((scenario, "sipforge"), [])
                ka = cpu_runs.get((scenario, "kamailio"), [])
                pairs = {}
                for r in sf:
                    pairs.setdefault(r["rep"], {})["s"] = r["us_per_call"] if r["clean"] else None
                for r in ka:
                    pairs.setdefault(r["rep"], {})["k"] = r["us_per_call"] if r["clean"] else None
                ratios = [p["s"] / p["k"] for p in pairs.values() if p.get("s") and p.get("k")]
                s = spread(ratios)
                goal = CPU_GOALS[scenario]
                verdict = "-" if not s else ("meets" if s["median"] <= goal else "MISSES")
                if not_stateful(scenario, "sipforge", sf):
                    verdict += " (but sipforge sent no 100 Trying: not a stateful figure)"
                lines.append(f"  {title}: CPU/call ratio {fmt_spread(s, 3)} "
                             f"(per repetition pair), goal <= {goal}: {verdict}")
            if not args.no_search:
                sf = spread([f["max_clean_rate"] for f in rates.get((scenario, "sipforge"), [])])
                ka = spread([f["max_clean_rate"] for f in rates.get((scenario, "kamailio"), [])])
                if sf and ka and ka["median"]:
                    ratio = f"{sf['median'] / ka['median']:.2f}x Kamailio"
                else:
                    ratio = "-"
                goal = RATE_GOALS.get(scenario)
                verdict = ""
                if goal and sf:
                    verdict = f", goal >= {goal}: {'meets' if sf['median'] >= goal else 'MISSES'}"
                lines.append(f"  {title}: max clean rate sipforge {fmt_spread(sf)} cps = {ratio}{verdict}")
    lines.append("")
    if args.baseline and not args.no_cpu:
        lines.extend(baseline_ratios(ctx, scenarios, cpu_runs))
    return "\n".join(lines)


def left_out_cell(ctx: Context, scenario: str, system: str) -> str:
    """The table cell of a system left out of a scenario."""
    why = ctx.broken[(scenario, system)]
    return "n/a (not built)" if why.startswith("does not build") else "n/a (smoke test failed)"


def baseline_ratios(ctx: Context, scenarios, cpu_runs) -> list[str]:
    """sipforge / sipforge at --baseline REV, and each against Kamailio, per
    repetition pair: on a host whose speed moves between runs, a change is
    judged against the code before it measured beside it."""
    rev = ctx.args.baseline
    lines = [f"sipforge / sipforge at {rev} (CPU per call, per repetition pair; below 1: cheaper now):"]
    for scenario in scenarios:
        title = SCENARIOS[scenario]["title"]
        if (scenario, "baseline") in ctx.broken:
            lines.append(f"  {title}: n/a: {ctx.broken[(scenario, 'baseline')]}")
            continue
        per_rep: dict[int, dict[str, float]] = {}
        for system in ("sipforge", "baseline", "kamailio"):
            for r in cpu_runs.get((scenario, system), []):
                if r["clean"]:
                    per_rep.setdefault(r["rep"], {})[system] = r["us_per_call"]

        def ratio(a: str, b: str) -> str:
            return fmt_spread(spread([p[a] / p[b] for p in per_rep.values()
                                      if p.get(a) and p.get(b)]), 3)
        lines.append(f"  {title}: sipforge / {rev} {ratio('sipforge', 'baseline')}; "
                     f"against Kamailio: sipforge {ratio('sipforge', 'kamailio')}, "
                     f"{rev} {ratio('baseline', 'kamailio')}")
    lines.append("")
    return lines


def cpu_budget_at_max(scenarios, systems, rates, cores: int) -> list[str]:
    """Where the CPU went in the fastest clean run of each search: the proxy's
    and sipp's CPU per call, the cores all of them used, and the rate at
    which sipp alone would fill every core (its cost per call falls a little
    as the rate rises, so that ceiling is an estimate, not a bound)."""
    lines = ["CPU at the highest clean rate (the fastest clean run of each search; "
             f"µs per call; {cores} cores shared by the proxy and both sipp sides):", "",
             "| scenario | system | rate | proxy | sipp (UAC+UAS) | cores used | sipp alone fills the cores at |",
             "|---|---|---|---|---|---|---|"]
    for scenario in scenarios:
        for system in systems:
            best = []
            for found in rates.get((scenario, system), []):
                clean = [r for r in found["runs"] if r["clean"] and r.get("sipp_us_per_call")]
                if clean:
                    best.append(max(clean, key=lambda r: r["rate"]))
            if not best:
                continue
            used = [r["rate"] * (r["us_per_call"] + r["sipp_us_per_call"]) / 1e6 for r in best]
            ceiling = [cores * 1e6 / r["sipp_us_per_call"] for r in best]
            lines.append(
                f"| {SCENARIOS[scenario]['title']} | {SYSTEM_TITLES[system]} "
                f"| {fmt_spread(spread([r['rate'] for r in best]))} "
                f"| {fmt_spread(spread([r['us_per_call'] for r in best]), 1)} "
                f"| {fmt_spread(spread([r['sipp_us_per_call'] for r in best]), 1)} "
                f"| {fmt_spread(spread(used), 2)} | {fmt_spread(spread(ceiling))} cps |")
    lines.append("")
    return lines


# --------------------------------------------------------------------------
# Memory per live INVITE transaction

def cmd_memory(args: argparse.Namespace) -> int:
    calls = args.calls or (5000 if args.quick else 20_000)
    rate = args.rate or (1000 if args.quick else 2000)
    systems = args.systems.split(",")
    out = make_out_dir(args, "memory")
    ctx = Context(args, out)
    setup(ctx, ["stateful"], systems)
    results = []
    for rep in range(1, args.reps + 1):
        for system in systems:
            if system == "sipforge" and not ctx.sipforge_bins:
                continue
            r = memory_run(ctx, system, calls, rate, rep)
            results.append(r)
            ctx.record(r)
            say(f"bench: memory {system} rep {rep}: base {r['base']['pss'] / 2**20:.1f} MiB, "
                f"held {r['held']['pss'] / 2**20:.1f} MiB with {r['uas_open_calls']} calls ringing, "
                f"after {r['after']['pss'] / 2**20:.1f} MiB: {r['bytes_per_txn']:.0f} B/transaction"
                + ("" if r["valid"] else
                   f"  INVALID: {r['uas_open_calls']} of {calls} calls held at once, "
                   f"{r['trying_per_call']} 100 Trying per INVITE (a stateful proxy sends 1)"))
    lines = [f"## Memory per live INVITE transaction {datetime.date.today().isoformat()}", "",
             f"{calls} INVITEs at {rate} cps held ringing (180) at the UAS; stateful scenario; "
             f"logging {args.logging}. (Pss after warm-up -> with all calls ringing) / calls, "
             "summed over the proxy's process tree.", "",
             "| system | bytes per live INVITE transaction | Pss base -> held -> after (MiB) |",
             "|---|---|---|"]
    for system in systems:
        rs = [r for r in results if r["system"] == system]
        if not rs:
            reason = (ctx.sipforge_reason or "not built").splitlines()[0]
            lines.append(f"| {SYSTEM_TITLES[system]} | n/a: {reason} | |")
            continue
        s = spread([r["bytes_per_txn"] for r in rs if r["valid"]])
        if s is None:
            lines.append(f"| {SYSTEM_TITLES[system]} | n/a: invalid run (not all calls held, or no "
                         "100 Trying: not stateful) | " + "; ".join(
                             f"{r['base']['pss'] / 2**20:.1f} -> {r['held']['pss'] / 2**20:.1f}" for r in rs) + " |")
            continue
        mem = "; ".join(f"{r['base']['pss'] / 2**20:.1f} -> {r['held']['pss'] / 2**20:.1f} -> "
                        f"{r['after']['pss'] / 2**20:.1f}" for r in rs)
        lines.append(f"| {SYSTEM_TITLES[system]} | {fmt_spread(s)} | {mem} |")
    sf = [r["bytes_per_txn"] for r in results if r["system"] == "sipforge" and r["valid"]]
    lines.append("")
    if sf:
        med = statistics.median(sf)
        lines.append(f"sipforge: {med:.0f} B per live INVITE transaction, goal <= {MEMORY_GOAL_BYTES}: "
                     f"{'meets' if med <= MEMORY_GOAL_BYTES else 'MISSES'}")
    else:
        lines.append("sipforge: n/a (not measured)")
    lines.append("")
    text = "\n".join(lines)
    (out / "summary.md").write_text(text)
    print(text)
    return 0


def memory_run(ctx: Context, system: str, calls: int, rate: int, rep: int) -> dict:
    ports = [PROXY_PORT, UAC_PORT, UAS1_PORT]
    require_ports_free(ports)
    run_dir = ctx.run_dir(f"memory-{system}")
    ramp = calls / rate
    hold_ms = int((ramp + 4) * 1000)
    lifetime = 2 * ramp + 120
    proxy = Proxy(system, "stateful", ctx, run_dir, lifetime)
    uas = None
    try:
        # Warm-up: a few short calls so allocator pools and caches exist.
        warm = run_dir / "warmup"
        warm.mkdir()
        uas, _, _ = start_uas(UAS1_PORT, "uas_hold.xml", warm, lifetime, ["-d", "200"])
        run_uac("uac_hold.xml", min(2000, calls // 4), rate, warm,
                recv_timeout_ms=10_000, limit=calls + 1000)
        stop(uas)
        time.sleep(6)   # Kamailio keeps ended transactions 5 s
        base = proxy.memory()
        uas, uas_stats, _ = start_uas(UAS1_PORT, "uas_hold.xml", run_dir, lifetime,
                                      ["-d", str(hold_ms)])
        uac, uac_stats = run_uac("uac_hold.xml", calls, rate, run_dir,
                                 recv_timeout_ms=hold_ms + 15_000, limit=calls + 1000,
                                 background=True)
        time.sleep(ramp + 2.0)
        held = proxy.memory()
        time.sleep(1.1)  # sipp dumps its stats every second
        open_calls = stat_int(read_sipp_stats(uas_stats), "CurrentCall")
        uac_open = stat_int(read_sipp_stats(uac_stats), "CurrentCall")
        try:
            uac.wait(timeout=ramp + hold_ms / 1000 + 30)
        except subprocess.TimeoutExpired:
            pass
        stop(uac)
        time.sleep(6)
        after = proxy.memory()
        uac_final = read_sipp_stats(uac_stats)
        trying = screen_count(run_dir / "uac.out", "100") or 0
        alive = proxy.alive()
    finally:
        if uas:
            stop(uas)
        proxy.stop()
    return {"purpose": "memory", "system": system, "rep": rep, "calls": calls, "rate": rate,
            "hold_ms": hold_ms, "base": base, "held": held, "after": after,
            "uas_open_calls": open_calls, "uac_open_calls": uac_open,
            "successful": stat_int(uac_final, "SuccessfulCall(C)"),
            "failed": stat_int(uac_final, "FailedCall(C)"), "proxy_alive": alive,
            "trying_per_call": round(trying / calls, 3),
            # Valid: every call was ringing at once, and through a stateful
            # proxy (which answers each INVITE with 100 Trying).
            "valid": open_calls >= 0.98 * calls and alive and trying >= 0.9 * calls,
            "bytes_per_txn": (held["pss"] - base["pss"]) / calls,
            "rss_bytes_per_txn": (held["rss"] - base["rss"]) / calls}


# --------------------------------------------------------------------------
# Routes edit -> new release binary

def cmd_rebuild(args: argparse.Namespace) -> int:
    out = make_out_dir(args, "rebuild")
    work = TARGET / "rebuild"
    work.mkdir(parents=True, exist_ok=True)
    routes = work / "routes.yaml"
    seed = (BENCH / "routes" / "seed_stateless.yaml").read_text()
    routes.write_text(seed)
    env = dict(os.environ, SIPFORGE_ROUTES=str(routes), CARGO_TARGET_DIR=str(TARGET))
    log = out / "build.log"
    say("bench: warm build (dependencies compiled once, not timed)")
    if run_logged(["cargo", "build", "--release", "--bin", "sipforge"], log, env=env, cwd=ROOT) != 0:
        print(f"rebuild: n/a: sipforge does not build (log {log}):\n{tail_of(log, 12)}")
        return 1
    times = []
    for i in range(1, args.reps + 1):
        marker = f"{os.getpid()}-{i}-{time.time_ns()}"
        edited = seed.replace("X-Proxied: You betcha", f"X-Proxied: You betcha {marker}")
        if edited == seed:
            fail("cannot find the header to edit in seed_stateless.yaml")
        started = time.monotonic()
        routes.write_text(edited)
        rc = run_logged(["cargo", "build", "--release", "--bin", "sipforge"], log, env=env, cwd=ROOT)
        elapsed = time.monotonic() - started
        if rc != 0:
            print(f"rebuild: the edited routes did not build (log {log})")
            return 1
        embedded = subprocess.run([TARGET / "release" / "sipforge", "--print-routes"],
                                  capture_output=True, text=True).stdout
        if marker not in embedded:
            print("rebuild: the new binary does not carry the edit: the build did not notice "
                  "the routes file change (build.rs rerun-if-changed?)")
            return 1
        times.append(elapsed)
        say(f"bench: rebuild {i}/{args.reps}: {elapsed:.1f} s")
    s = spread(times)
    verdict = "meets" if s["median"] <= REBUILD_GOAL_S else "MISSES"
    text = (f"## Routes edit to new release binary {datetime.date.today().isoformat()}\n\n"
            f"`cargo build --release` after editing the routes file: {fmt_spread(s, 1, ' s')}; "
            f"goal <= {REBUILD_GOAL_S:.0f} s: {verdict}\n")
    (out / "summary.md").write_text(text)
    ctx = Context(args, out)
    ctx.record({"purpose": "rebuild", "seconds": times})
    print(text)
    return 0


# --------------------------------------------------------------------------
# Shared setup

def make_out_dir(args: argparse.Namespace, kind: str = "bench") -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else BENCH / "out" / f"{stamp}-{kind}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def setup(ctx: Context, scenarios: list[str], systems: list[str]) -> None:
    args = ctx.args
    ensure_tools(not args.no_install)
    if "naive" in systems:
        ctx.naive_bin = build_naive(ctx.out)
    if "baseline" in systems:
        ctx.baseline_bins, ctx.baseline_reasons = build_baseline(args.baseline, scenarios, ctx.out)
        SYSTEM_TITLES["baseline"] = f"sipforge at {args.baseline}"
    if "sipforge" in systems:
        try:
            if args.no_build:
                bins = {s: sipforge_binary(s) for s in scenarios}
                missing = [str(b) for b in bins.values() if not b.exists()]
                if missing:
                    raise Unavailable(f"--no-build but missing: {', '.join(missing)}")
                ctx.sipforge_bins = bins
            else:
                ctx.sipforge_bins = build_sipforge(scenarios, ctx.out)
        except Unavailable as e:
            ctx.sipforge_reason = str(e)
            ctx.sipforge_bins = {}
            say(f"bench: SIPFORGE NOT MEASURED: {e}")
            if args.require_sipforge:
                fail("sipforge is required (--require-sipforge)")


def environment() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def first_line(cmd):
        try:
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
            return next((l.strip() for l in text.splitlines() if l.strip()), "?")
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "kamailio": first_line(["kamailio", "-v"]).replace("version: ", ""),
            "sipp": first_line(["sipp", "-v"]), "sipforge_commit": commit,
            "rmem_max": Path("/proc/sys/net/core/rmem_max").read_text().strip(),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3]}


def parse_args(argv: list[str]) -> argparse.Namespace:
    command = "bench"
    if argv and argv[0] in ("memory", "rebuild", "setup", "bench"):
        command, argv = argv[0], argv[1:]
    p = argparse.ArgumentParser(prog=f"bench/run{'' if command == 'bench' else ' ' + command}",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few seconds per run (development)")
    p.add_argument("--out", help="output directory (default bench/out/DATE-KIND)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    p.add_argument("--no-build", action="store_true", help="reuse target/bench/bin/sipforge-*")
    p.add_argument("--require-sipforge", action="store_true", help="fail if sipforge does not build")
    p.add_argument("--logging", choices=["on", "off"], default="on",
                   help="on: both proxies write one info line per request and per reply to a "
                        "file; off: warnings only (default on)")
    p.add_argument("--keep-logs", action="store_true", help="keep big proxy logs of each run")
    p.add_argument("--kamailio-shm", type=int, default=2048, help="Kamailio -m (MB)")
    p.add_argument("--kamailio-children", type=int, default=2, help="Kamailio -n")
    p.add_argument("--sipforge-args", default="",
                   help="extra arguments for every sipforge process, one shell-quoted string "
                        "(e.g. \"--workers 1\"); default none: one receive thread per core")
    p.add_argument("--proxy-cpus", default="",
                   help="run every proxy under `taskset -c LIST` (e.g. 4-7); default: not pinned")
    p.add_argument("--sipp-cpus", default="",
                   help="run every sipp under `taskset -c LIST` (e.g. 0-3); default: not pinned")
    if command == "bench":
        p.add_argument("--systems", default="naive,kamailio,sipforge")
        p.add_argument("--scenarios", default=",".join(SCENARIOS))
        p.add_argument("--calls", type=int, help="calls per CPU run (20000; quick 3000)")
        p.add_argument("--rate", type=int, help="cps of the CPU runs (1000)")
        p.add_argument("--reps", type=int, help="CPU repetitions (5; quick 2)")
        p.add_argument("--tail", type=float, help="seconds counted after the last call "
                                                  "(default per scenario: 2 where no proxy "
                                                  "keeps a transaction, 34 stateful)")
        p.add_argument("--no-cpu", action="store_true", help="skip the CPU runs")
        p.add_argument("--baseline", metavar="REV",
                       help="also measure sipforge as it was at git revision REV (built with "
                            "today's bench routes, in target/bench/baseline-SHA/), interleaved "
                            "with the others, and print sipforge / REV per repetition pair: "
                            "whether a change made the proxy cheaper or dearer, on this host, "
                            "in this run")
        p.add_argument("--max-steal", type=float, default=2.0,
                       help="a CPU run during which the host's steal time was over this share "
                            "of the machine (%%) is measured again (default 2)")
        p.add_argument("--steal-retries", type=int, default=2,
                       help="how many times a CPU run may be measured again for steal (default 2)")
        p.add_argument("--no-search", action="store_true", help="skip the max rate search")
        p.add_argument("--search-reps", type=int, help="rate search repetitions (3; quick 1)")
        p.add_argument("--search-duration", type=float, help="seconds per search run (5; quick 2)")
        p.add_argument("--search-start", type=int, default=2000)
        p.add_argument("--search-max", type=int, default=30_000)
        p.add_argument("--search-resolution", type=int, default=250)
        p.add_argument("--recv-timeout-ms", type=int, default=5000,
                       help="sipp UAC: a message not received within this fails the call")
    elif command == "memory":
        p.add_argument("--systems", default="kamailio,sipforge")
        p.add_argument("--calls", type=int, help="calls held at once (20000; quick 5000)")
        p.add_argument("--rate", type=int, help="cps while building up (2000; quick 1000)")
        p.add_argument("--reps", type=int, default=1)
    elif command == "rebuild":
        p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    args.command = command
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for who, cpus in (("proxy", args.proxy_cpus), ("sipp", args.sipp_cpus)):
        PIN[who] = ["taskset", "-c", cpus] if cpus else []
    if args.command == "bench":
        return cmd_bench(args)
    if args.command == "memory":
        return cmd_memory(args)
    if args.command == "rebuild":
        return cmd_rebuild(args)
    out = make_out_dir(args, "setup")
    ctx = Context(args, out)
    setup(ctx, list(SCENARIOS), SYSTEMS)
    print(f"setup done: naive relay {ctx.naive_bin}; sipforge "
          f"{', '.join(map(str, ctx.sipforge_bins.values())) or 'NOT BUILT: ' + str(ctx.sipforge_reason)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
