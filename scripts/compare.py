#!/usr/bin/env python3
"""Two NATS-protocol servers side by side under one load generator.

usage: scripts/compare.py [options] SERVER_A_CMD SERVER_B_CMD
       scripts/compare.py --list
       scripts/compare.py --load-args SCENARIO [--load natsbench|ringnats] [--scale X]

The load is tools/natsbench (our Go program around nats.go's bench package; built by
tools/natsbench/build.sh) or, with --load ringnats, `ringnats bench` (for machines without
Go). The same scenario list drives both, so the tables have the same rows.

SERVER_CMD is a template, split with shlex and run without a shell (the watched PID is the
server itself). Placeholders: {config} a nats-server-format config file written per start
(`listen: 127.0.0.1:PORT` plus, per phase, an authorization block), {port}, {host}, {dir}.
A template without {config} runs only the no-auth phase.

Rounds interleave the servers (A B | B A | ... by default). Each start runs one phase's
scenarios; the no-auth phase begins with an unrecorded warm-up. Every run records the
server's CPU, the load generator's CPU and the CPU other processes used ("foreign"); a run
with more foreign CPU than --max-foreign is repeated (at most --retries times). Raw runs go
to OUT/runs.jsonl, the table to OUT/summary.md. Only loopback addresses are used; every load
run is bounded (40 s inside the generator, killed at 55 s).
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOAD_BOUND_S = 40  # the generator's own bound on a run
LOAD_KILL_S = 55  # ...and ours, should it not stop
START_BOUND_S = 15  # a server that does not listen by then failed to start
IDLE_SETTLE_S = 0.2  # idle RSS is read this long after the port answers
PHASES = ("none", "token", "users", "jwt")


class Load:
    """What one scenario asks of the load generator, independent of which one runs it."""

    def __init__(self, kind, pubs=1, subs=0, size=128, msgs=0, queue=None, subject=None,
                 workers=0, seconds=0.0):
        self.kind, self.pubs, self.subs, self.size = kind, pubs, subs, size
        self.msgs, self.queue, self.subject = msgs, queue, subject
        self.workers, self.seconds = workers, seconds

    def scaled(self, msg_scale, time_scale):
        copy = Load(**vars(self))
        copy.msgs = max(1, int(self.msgs * msg_scale)) if self.msgs else 0
        copy.seconds = max(0.5, self.seconds * time_scale) if self.seconds else 0.0
        return copy

    def natsbench_args(self):
        if self.kind == "connect":
            return ["-mode", "connect", "-c", str(self.workers), "-duration", f"{self.seconds:g}s"]
        args = ["-mode", self.kind, "-np", str(self.pubs), "-ns", str(self.subs),
                "-ms", str(self.size), "-n", str(self.msgs)]
        if self.queue:
            args += ["-q", self.queue]
        if self.subject:
            args += ["-subj", self.subject]
        return args

    def ringnats_args(self):
        args = [self.subject] if self.subject else []
        if self.kind == "connect":
            return args + ["--connect-storm", "--workers", str(self.workers),
                           "--duration", f"{int(self.seconds * 1000)}ms"]
        if self.kind == "reqrep":
            args.append("--request")
        args += ["--pub", str(self.pubs), "--sub", str(max(self.subs, 1 if self.kind == "reqrep" else 0)),
                 "--size", str(self.size), "--msgs", str(self.msgs)]
        if self.queue:
            args += ["--queue", self.queue]
        return args

    def operations(self):
        """What the server handled, for CPU per operation: delivered messages (or published
        ones without subscribers), requests, or None (connects are counted by the run)."""
        if self.kind == "pubsub":
            if self.subs == 0:
                return self.msgs
            return self.msgs if self.queue else self.msgs * self.subs
        if self.kind == "reqrep":
            return self.msgs
        return None

    def describe(self):
        return " ".join(self.natsbench_args())


THROUGHPUT_PUB = [("pub_msgs_per_sec", "msgs/s", True)]
THROUGHPUT_SUB = [("sub_msgs_per_sec", "msgs/s recv", True)]
THROUGHPUT_SUM = [("sub_msgs_per_sec", "msgs/s recv (sum)", True)]
CONNECTS = [("connects_per_sec", "connects/s", True)]
CONNECT_P50 = [("lat_us.p50", "us p50 connect", False)]

# name, phase, credentials, load, metrics (result key, unit, higher is better). Message counts
# are a full run's; --quick halves them and the storm durations.
SCENARIOS = [
    ("pub16", "none", "none", Load("pubsub", 1, 0, 16, 15_000_000), THROUGHPUT_PUB),
    ("pub128", "none", "none", Load("pubsub", 1, 0, 128, 10_000_000), THROUGHPUT_PUB),
    ("pubsub128", "none", "none", Load("pubsub", 1, 1, 128, 3_000_000), THROUGHPUT_SUB),
    ("fanout4", "none", "none", Load("pubsub", 1, 4, 128, 800_000), THROUGHPUT_SUM),
    ("fanin4", "none", "none", Load("pubsub", 4, 1, 128, 3_000_000), THROUGHPUT_SUB),
    ("queue4", "none", "none", Load("pubsub", 1, 4, 128, 3_000_000, queue="bench"), THROUGHPUT_SUM),
    ("reqrep", "none", "none", Load("reqrep", 1, 1, 16, 10_000),
     [("lat_us.p50", "us p50", False), ("lat_us.p99", "us p99", False)]),
    ("storm_none", "none", "none", Load("connect", workers=4, seconds=2), CONNECTS),
    ("connlat_none", "none", "none", Load("connect", workers=1, seconds=1), CONNECT_P50),
    ("storm_token", "token", "token", Load("connect", workers=4, seconds=2), CONNECTS),
    ("connlat_token", "token", "token", Load("connect", workers=1, seconds=1), CONNECT_P50),
    ("storm_bcrypt", "users", "bcrypt", Load("connect", workers=4, seconds=3), CONNECTS),
    ("connlat_bcrypt", "users", "bcrypt", Load("connect", workers=1, seconds=2), CONNECT_P50),
    ("storm_nkey", "users", "nkey", Load("connect", workers=4, seconds=2), CONNECTS),
    ("connlat_nkey", "users", "nkey", Load("connect", workers=1, seconds=1), CONNECT_P50),
    ("connlat_plain", "users", "plain", Load("connect", workers=1, seconds=1), CONNECT_P50),
    ("storm_creds", "jwt", "creds", Load("connect", workers=4, seconds=2), CONNECTS),
    ("connlat_creds", "jwt", "creds", Load("connect", workers=1, seconds=1), CONNECT_P50),
    ("pub16_open_user", "users", "open", Load("pubsub", 1, 0, 16, 15_000_000, subject="events.bench"),
     THROUGHPUT_PUB),
    ("pub16_restricted", "users", "restricted",
     Load("pubsub", 1, 0, 16, 15_000_000, subject="events.bench"), THROUGHPUT_PUB),
]
WARMUP = Load("pubsub", 1, 1, 128, 300_000)
BY_NAME = {s[0]: s for s in SCENARIOS}


def say(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- credentials -----------------------------------------------------------------------

def make_secrets(load, tool, work, bcrypt_cost):
    """A random token and password, the password's bcrypt hash and a user nkey, made by the
    load generator in use (natsbench -mode keygen, or ringnats passwd/keygen)."""
    sec = {"token": secrets.token_hex(16), "password": secrets.token_hex(12), "work": work,
           "nkey_file": os.path.join(work, "user.nk")}
    if load == "natsbench":
        out = subprocess.run([tool, "-mode", "keygen", "-pass", sec["password"],
                              "-bcrypt-cost", str(bcrypt_cost)],
                             capture_output=True, text=True, check=True).stdout
        made = json.loads(out)
        sec.update(bcrypt=made["bcrypt"], nkey_pub=made["nkey_pub"], seed=made["nkey_seed"])
    else:
        sec["bcrypt"] = subprocess.run([tool, "passwd", "--cost", str(bcrypt_cost)],
                                       input=sec["password"] + "\n", capture_output=True,
                                       text=True, check=True).stdout.strip()
        sec["seed"], sec["nkey_pub"] = ringnats_user_nkey(tool)
    fd = os.open(sec["nkey_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(sec.pop("seed") + "\n")
    sec["operator_block"], sec["creds_file"] = make_operator(ringnats_binary(), work)
    return sec


def ringnats_binary():
    """The ringnats whose `jwt` and `keygen` subcommands make the operator-mode fixtures
    ($RINGNATS, or target/release/ringnats)."""
    return os.environ.get("RINGNATS") or os.path.join(REPO, "target/release/ringnats")


def make_operator(ringnats, work):
    """Operator mode for the `jwt` phase, made with `ringnats jwt` (no nsc here): an operator
    with a system account, account A preloaded in the memory resolver, and one user of A with
    publish/subscribe permissions in a `.creds` file. Returns (config block, creds path); both
    servers read the same files."""
    def run(*args):
        return subprocess.run([ringnats, *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    def key(kind, name):
        text = run("keygen", kind)
        path = os.path.join(work, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        public = next(w for w in text.split() if w[0] in "OAU" and len(w) == 56)
        return path, public

    def write(name, text):
        path = os.path.join(work, name)
        with open(path, "w") as f:
            f.write(text + "\n")
        return path

    op_seed, _ = key("operator", "op.nk")
    sys_seed, sys_pub = key("account", "sys.nk")
    acc_seed, acc_pub = key("account", "a.nk")
    user_seed, user_pub = key("user", "u.nk")
    op_jwt = write("op.jwt", run("jwt", "operator", "--signer", op_seed, "--name", "OP",
                                 "--system-account", sys_pub))
    sys_jwt = write("sys.jwt", run("jwt", "account", "--signer", op_seed, "--name", "SYS",
                                   "--subject", sys_pub))
    acc_jwt = write("a.jwt", run("jwt", "account", "--signer", op_seed, "--name", "A",
                                 "--subject", acc_pub))
    user_jwt = write("u.jwt", run("jwt", "user", "--signer", acc_seed, "--name", "bench",
                                  "--subject", user_pub, "--pub-allow", "events.>",
                                  "--pub-allow", "_INBOX.>", "--sub-allow", "results.>",
                                  "--sub-allow", "_INBOX.>"))
    creds = os.path.join(work, "u.creds")
    fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(run("jwt", "creds", "--jwt", user_jwt, "--seed", user_seed) + "\n")
    block = run("jwt", "config", "--operator", op_jwt, "--account", sys_jwt, "--account", acc_jwt)
    return block, creds


def ringnats_user_nkey(ringnats):
    """(seed, public key) from `ringnats keygen user`, whichever order or labels it prints."""
    out = subprocess.run([ringnats, "keygen", "user"], capture_output=True, text=True,
                         check=True).stdout
    seed = next(w for w in out.split() if w.startswith("SU"))
    public = next(w for w in out.split() if w.startswith("U") and len(w) == 56)
    return seed, public


def auth_block(phase, sec):
    if phase == "token":
        return 'authorization {\n  token: "%s"\n}' % sec["token"]
    if phase == "jwt":
        return sec["operator_block"]
    if phase == "users":
        pw = sec["password"]
        return ("authorization {\n  users = [\n"
                f'    {{ user: "bcrypt", password: "{sec["bcrypt"]}" }}\n'
                f'    {{ user: "plain", password: "{pw}" }}\n'
                f'    {{ user: "open", password: "{pw}" }}\n'
                f'    {{ user: "restricted", password: "{pw}", permissions: {{ '
                'publish: { allow: ["events.>"] }, subscribe: { allow: ["results.>"] } } }\n'
                f'    {{ nkey: "{sec["nkey_pub"]}" }}\n'
                "  ]\n}")
    return ""


def credential_args(load, who, sec):
    """The load generator's flags for one kind of client credentials."""
    if who == "none":
        return []
    user_pass = {"natsbench": ["-user", who, "-pass", sec["password"]],
                 "ringnats": ["--user", who, "--password", sec["password"]]}[load]
    return {
        "token": {"natsbench": ["-token", sec["token"]], "ringnats": ["--token", sec["token"]]}[load],
        "nkey": {"natsbench": ["-nkey", sec["nkey_file"]], "ringnats": ["--nkey", sec["nkey_file"]]}[load],
        "creds": {"natsbench": ["-creds", sec["creds_file"]], "ringnats": ["--creds", sec["creds_file"]]}[load],
    }.get(who, user_pass)


# ---- processes and CPU -----------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def machine_ticks():
    """(busy, steal) clock ticks of the whole machine so far."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]] + [0] * 8
    idle, iowait, steal = fields[3], fields[4], fields[7]
    return sum(fields[:8]) - idle - iowait, steal


def process_tree(root):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_ticks(root):
    ticks = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return ticks


def tree_status_kb(root, key):
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith(key + ":"))
        except (OSError, ValueError):
            pass
    return total


class Server:
    running = []

    def __init__(self, name, template, phase, work, cpus, sec):
        self.name, self.template, self.phase = name, template, phase
        self.work, self.cpus, self.sec = work, cpus, sec
        self.proc = None

    def start(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"{self.name}-{self.phase}-", dir=self.work)
        config = os.path.join(self.dir, "server.conf")
        with open(config, "w") as f:
            f.write(f"# scripts/compare.py, phase {self.phase}\nlisten: {HOST}:{self.port}\n"
                    f"{auth_block(self.phase, self.sec)}\n")
        argv = [a.format(config=config, port=self.port, host=HOST, dir=self.dir)
                for a in shlex.split(self.template)]
        if self.cpus:
            argv = ["taskset", "-c", self.cpus] + argv
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        Server.running.append(self)
        began = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; "
                                   f"see {self.dir}/server.log")
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() - began > START_BOUND_S:
                    raise RuntimeError(f"{self.name} not listening on {self.port} after {START_BOUND_S} s")
                time.sleep(0.02)
        time.sleep(IDLE_SETTLE_S)
        self.idle_kb = tree_status_kb(self.proc.pid, "VmRSS")

    def url(self):
        return f"nats://{HOST}:{self.port}"

    def stop(self):
        """Stops the server (its own process group) and returns its peak RSS in kB."""
        if self.proc is None:
            return None
        peak = tree_status_kb(self.proc.pid, "VmHWM")
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.log.close()
        Server.running.remove(self)
        self.proc = None
        return peak


# ---- one run ---------------------------------------------------------------------------

RINGNATS_PATTERNS = {
    "pub_msgs_per_sec": re.compile(r"^\s*Pub stats: ([\d,]+) msgs/sec", re.M),
    "sub_msgs_per_sec": re.compile(r"^\s*Sub stats: ([\d,]+) msgs/sec", re.M),
    "connects_per_sec": re.compile(r"^Connect stats: ([\d,]+) connects/sec", re.M),
}
RINGNATS_LATENCY = re.compile(r"^(?:Connect latency|Latency): (.*)$", re.M)
UNIT_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def parse_ringnats_bench(text, rc, load):
    """The keys natsbench's JSON line has, read from `ringnats bench`'s report."""
    res = {"mode": load.kind, "tool": "ringnats bench"}
    for key, pattern in RINGNATS_PATTERNS.items():
        m = pattern.search(text)
        if m:
            res[key] = int(m.group(1).replace(",", ""))
    m = RINGNATS_LATENCY.search(text)
    if m:
        lat = {}
        for part in m.group(1).split("|"):
            got = re.match(r"\s*(min|avg|p50|p90|p99|p99\.9|max) ([\d.]+)(ns|us|ms|s)\b", part)
            if got:
                name = {"avg": "mean", "p99.9": "p999"}.get(got.group(1), got.group(1))
                lat[name] = float(got.group(2)) * UNIT_US[got.group(3)]
        res["lat_us"] = lat
    wanted = {"pubsub": "pub_msgs_per_sec" if load.subs == 0 else "sub_msgs_per_sec",
              "reqrep": "lat_us", "connect": "connects_per_sec"}[load.kind]
    res["complete"] = rc == 0 and wanted in res
    return res


def dig(d, dotted):
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def run_load(ctx, server, name, who, load):
    if ctx.load == "natsbench":
        argv = [ctx.tool, "-s", server.url(), "-quiet", "-label", name,
                "-timeout", f"{LOAD_BOUND_S}s"] + load.natsbench_args()
    else:
        argv = [ctx.tool, "bench", "-s", server.url(), "--no-progress"] + load.ringnats_args()
    argv += credential_args(ctx.load, who, ctx.sec)
    if ctx.client_cpus:
        argv = ["taskset", "-c", ctx.client_cpus] + argv
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv0, (busy0, steal0), t0 = tree_cpu_ticks(server.proc.pid), machine_ticks(), time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=LOAD_KILL_S)
        out, err, rc = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired:
        out, err, rc = "", f"killed after {LOAD_KILL_S} s", -1
    t1, srv1, (busy1, steal1) = time.monotonic(), tree_cpu_ticks(server.proc.pid), machine_ticks()
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = t1 - t0
    client = (usage1.ru_utime - usage0.ru_utime + usage1.ru_stime - usage0.ru_stime) / wall
    server_cpu = (srv1 - srv0) / CLOCK_TICKS / wall
    if ctx.load == "natsbench":
        res = {}
        for line in reversed(out.strip().splitlines()):
            try:
                res = json.loads(line)
                break
            except ValueError:
                continue
    else:
        res = parse_ringnats_bench(out + err, rc, load)
    ok = bool(res.get("complete")) and rc == 0
    ops = load.operations() or (res.get("connects_ok") if ok else None)
    if ops is None and ok and res.get("connects_per_sec") and load.seconds:
        ops = res["connects_per_sec"] * load.seconds  # ringnats bench prints only the rate
    rec = {"scenario": name, "server": server.name, "phase": server.phase, "rc": rc, "ok": ok,
           "server_cpu": round(server_cpu, 3), "client_cpu": round(client, 3),
           "foreign_cpu": round(max(0.0, (busy1 - busy0) / CLOCK_TICKS / wall - server_cpu - client), 3),
           "steal_cpu": round((steal1 - steal0) / CLOCK_TICKS / wall, 3),
           "wall_s": round(wall, 3), "argv": ctx.redact(argv), "result": res,
           "server_ns_per_op": round(server_cpu * wall / ops * 1e9, 1) if ok and ops else None}
    if not ok:
        rec["stderr"] = (err or out)[-500:]
    return rec


# ---- the table -------------------------------------------------------------------------

def short(v):
    if v is None:
        return "n/a"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.1f}k"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    """Half the min..max range as a % of the median."""
    xs = [x for x in xs if x is not None]
    if len(xs) < 2 or not statistics.median(xs):
        return "-"
    return f"±{50 * (max(xs) - min(xs)) / statistics.median(xs):.1f}%"


def ratio_cells(va, vb):
    ma, mb = median(va), median(vb)
    per_round = [b / a for a, b in zip(va, vb) if a and b]
    return (ma, mb, f"{mb / ma:.3f}" if ma and mb else "n/a",
            f"{min(per_round):.3f}..{max(per_round):.3f}" if per_round else "n/a")


def summarize(runs, rss, meta):
    a, b = meta["names"]
    rows = [f"| scenario | metric | {a} median | {b} median | B/A | per-round B/A min..max | "
            f"{a} spread | {b} spread | srv CPU {a}/{b} | srv ns/op {a}/{b} | fail {a}/{b} |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    by = {}
    for r in runs:
        by.setdefault((r["scenario"], r["server"]), []).append(r)
    for name, _, _, _, metrics in SCENARIOS:
        ra = sorted(by.get((name, a), []), key=lambda r: r["round"])
        rb = sorted(by.get((name, b), []), key=lambda r: r["round"])
        if not ra and not rb:
            continue
        for key, unit, higher in metrics:
            va = [dig(r["result"], key) if r["ok"] else None for r in ra]
            vb = [dig(r["result"], key) if r["ok"] else None for r in rb]
            ma, mb, ratio, per_round = ratio_cells(va, vb)
            cpu = f"{short(median([r['server_cpu'] for r in ra]))}/{short(median([r['server_cpu'] for r in rb]))}"
            nsop = (f"{short(median([r.get('server_ns_per_op') for r in ra]))}/"
                    f"{short(median([r.get('server_ns_per_op') for r in rb]))}")
            fails = f"{sum(not r['ok'] for r in ra)}/{sum(not r['ok'] for r in rb)}"
            rows.append(f"| {name} | {unit} ({'higher' if higher else 'lower'} better) | {short(ma)} | "
                        f"{short(mb)} | {ratio} | {per_round} | {spread(va)} | {spread(vb)} | {cpu} | "
                        f"{nsop} | {fails} |")
    for label, key in (("idle RSS after start", "idle_kb"), ("peak RSS (VmHWM) after no-auth phase", "peak_kb")):
        va = [x[key] / 1024 for x in sorted(rss.get(a, []), key=lambda x: x["round"])]
        vb = [x[key] / 1024 for x in sorted(rss.get(b, []), key=lambda x: x["round"])]
        ma, mb, ratio, per_round = ratio_cells(va, vb)
        rows.append(f"| server | {label}, MiB (lower better) | {short(ma)} | {short(mb)} | {ratio} | "
                    f"{per_round} | {spread(va)} | {spread(vb)} | | | |")
    foreign = [r["foreign_cpu"] for r in runs]
    steal = [r.get("steal_cpu", 0) for r in runs]
    head = [f"# scripts/compare.py run {meta['started']}", "",
            f"- A = `{meta['A']}`", f"- B = `{meta['B']}`",
            f"- load generator: {meta['load_text']}",
            f"- rounds: {meta['rounds']}, order {meta['order']} "
            f"({'A B | B A | ...' if meta['order'] == 'abba' else 'A B | A B | ...'}), "
            f"message scale {meta['scale']}, duration scale {meta['dscale']}",
            f"- pinning: {meta['pinning']}",
            f"- host: {meta['host']}",
            f"- foreign CPU during runs (busy CPU from neither server nor load generator): median "
            f"{short(median(foreign))}, max {short(max(foreign) if foreign else None)} cores; steal median "
            f"{short(median(steal))}, max {short(max(steal) if steal else None)} cores; "
            f"{meta.get('repeated', 0)} runs repeated for foreign CPU > {meta['max_foreign']}",
            "- spread: half the min..max range over rounds, as % of the median. srv CPU: server cores "
            "busy during the run (near 1.0 on a one-CPU pin: the server is the limit; well below: the "
            "load generator or the kernel is). srv ns/op: server CPU time per delivered message "
            "(published, without subscribers), request or connect: the figure to compare when the "
            "load generator is the limit.", ""]
    return "\n".join(head + rows) + "\n"


def resummarize(directory):
    with open(os.path.join(directory, "meta.json")) as f:
        meta = json.load(f)
    runs, rss = [], {n: [] for n in meta["names"]}
    with open(os.path.join(directory, "runs.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if "rss" in r:
                rss[r["rss"]].append(r)
            elif not r.get("discarded"):
                runs.append(r)
    print(summarize(runs, rss, meta))


# ---- main ------------------------------------------------------------------------------

class Context:
    def __init__(self, load, tool, sec, client_cpus):
        self.load, self.tool, self.sec, self.client_cpus = load, tool, sec, client_cpus

    def redact(self, argv):
        """argv for the record: no secrets, no scratch paths."""
        hidden = {self.sec["password"], self.sec["token"]}
        return ["***" if a in hidden else a.replace(self.sec["work"], "$WORK").replace(REPO + "/", "")
                for a in argv]


def default_tool(load):
    if load == "ringnats":
        return os.path.join(REPO, "target/release/ringnats")
    return os.path.join(os.environ.get("NATSBENCH_DIR") or os.path.join(REPO, "target/natsbench"),
                        "natsbench")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("server_a", nargs="?")
    ap.add_argument("server_b", nargs="?")
    ap.add_argument("--load", choices=("natsbench", "ringnats"), default="natsbench",
                    help="natsbench (tools/natsbench, default) or ringnats (`ringnats bench`)")
    ap.add_argument("--tool", help="the load generator's binary (default target/natsbench/natsbench "
                    "or target/release/ringnats)")
    ap.add_argument("--names", default="A,B", help="labels of the two servers")
    ap.add_argument("--rounds", type=int, help="rounds (default 5; 2 with --quick)")
    ap.add_argument("--order", choices=("abba", "abab"), default="abba",
                    help="abba: B first in even rounds (default); abab: A always first")
    ap.add_argument("--quick", action="store_true", help="2 rounds, half the messages, shorter storms")
    ap.add_argument("--scenarios", default="", help="comma list (default: all; see --list)")
    ap.add_argument("--no-pin", action="store_true", help="no taskset for servers and load")
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--client-cpus", default="1")
    ap.add_argument("--bcrypt-cost", type=int, default=11)
    ap.add_argument("--max-foreign", type=float, default=0.25,
                    help="repeat a run when other processes used more cores than this (default 0.25)")
    ap.add_argument("--retries", type=int, default=2, help="repeats allowed per run for --max-foreign")
    ap.add_argument("--out", help="results folder (default perf/results/<stamp>)")
    ap.add_argument("--list", action="store_true", help="print the scenarios and exit")
    ap.add_argument("--load-args", metavar="SCENARIO",
                    help="print the load generator's arguments for SCENARIO (at --scale) and exit")
    ap.add_argument("--scale", type=float, default=1.0, help="message count scale for --load-args")
    ap.add_argument("--msgs", type=int, help="message/request count for --load-args (instead of --scale)")
    ap.add_argument("--resummarize", metavar="DIR", help="print the table of a saved run again")
    args = ap.parse_args()

    if args.list:
        for name, phase, who, load, _ in SCENARIOS:
            print(f"{name:18} phase={phase:6} credentials={who:10} natsbench {load.describe()}")
        return 0
    if args.load_args:
        if args.load_args not in BY_NAME:
            sys.exit(f"unknown scenario {args.load_args!r}; see --list")
        load = BY_NAME[args.load_args][3].scaled(args.scale, 1.0)
        if args.msgs and load.kind != "connect":
            load.msgs = args.msgs
        print(shlex.join(load.natsbench_args() if args.load == "natsbench" else load.ringnats_args()))
        return 0
    if args.resummarize:
        resummarize(args.resummarize)
        return 0
    if not (args.server_a and args.server_b):
        ap.error("need SERVER_A_CMD and SERVER_B_CMD")
    names = args.names.split(",")
    if len(names) != 2 or names[0] == names[1]:
        sys.exit("--names needs two different labels")
    tool = args.tool or default_tool(args.load)
    if not os.access(tool, os.X_OK):
        sys.exit(f"{tool} is not built (tools/natsbench/build.sh, or cargo build --release)")
    wanted = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in wanted if s not in BY_NAME]
    if unknown:
        sys.exit(f"unknown scenarios {unknown}; see --list")
    chosen = [s for s in SCENARIOS if not wanted or s[0] in wanted]
    rounds = args.rounds or (2 if args.quick else 5)
    scale = 0.5 if args.quick else 1.0

    pin = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    server_cpus, client_cpus = (args.server_cpus, args.client_cpus) if pin else (None, None)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or os.path.join(REPO, "perf", "results", stamp)
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="compare-")
    sec = make_secrets(args.load, tool, work, args.bcrypt_cost)
    ctx = Context(args.load, tool, sec, client_cpus)
    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    if args.load == "natsbench":
        load_text = "tools/natsbench (nats.go's bench package, Debian golang-github-nats-io-go-nats-dev)"
    else:
        load_text = f"`{os.path.relpath(tool, REPO)} bench`"
    meta = {"started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "A": args.server_a, "B": args.server_b, "names": names, "load": args.load,
            "load_text": load_text, "rounds": rounds, "order": args.order, "scale": scale,
            "dscale": scale, "bcrypt_cost": args.bcrypt_cost, "max_foreign": args.max_foreign,
            "retries": args.retries, "scenarios": [s[0] for s in chosen],
            "pinning": (f"servers taskset -c {server_cpus}, load generator taskset -c {client_cpus}"
                        if pin else "none"),
            "host": f"{platform.node()} {platform.release()} {os.cpu_count()} CPUs {cpu_model}"}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)  # again at the end, with the count of repeated runs
    say(f"results -> {out}; load {args.load}; pinning: {meta['pinning']}")

    templates = dict(zip(names, (args.server_a, args.server_b)))
    runs, rss, repeated = [], {n: [] for n in names}, 0
    began = time.monotonic()
    journal = open(os.path.join(out, "runs.jsonl"), "w")

    def record(entry):
        journal.write(json.dumps(entry) + "\n")
        journal.flush()

    try:
        for rnd in range(1, rounds + 1):
            order = names if args.order == "abab" or rnd % 2 == 1 else names[::-1]
            for sname in order:
                for phase in PHASES:
                    todo = [s for s in chosen if s[1] == phase]
                    if not todo:
                        continue
                    if phase != "none" and "{config}" not in templates[sname]:
                        say(f"[{sname}] no {{config}} in its command: phase {phase} skipped")
                        continue
                    server = Server(sname, templates[sname], phase, work, server_cpus, sec)
                    server.start()
                    if phase == "none":
                        run_load(ctx, server, "warmup", "none", WARMUP)
                    for name, _, who, load, metrics in todo:
                        for attempt in range(args.retries + 1):
                            rec = run_load(ctx, server, name, who, load.scaled(scale, scale))
                            rec["round"], rec["attempt"] = rnd, attempt
                            noisy = rec["foreign_cpu"] > args.max_foreign and attempt < args.retries
                            if noisy:
                                rec["discarded"] = f"foreign_cpu > {args.max_foreign}"
                                repeated += 1
                            else:
                                runs.append(rec)
                            record(rec)
                            values = " ".join(f"{k}={short(dig(rec['result'], k))}" for k, _, _ in metrics)
                            say(f"r{rnd} {sname:>11} {name:17} {values:32} srvcpu={rec['server_cpu']:.2f} "
                                f"foreign={rec['foreign_cpu']:.2f}{'  (noisy: again)' if noisy else ''}"
                                f"{'' if rec['ok'] else '  FAILED ' + rec.get('stderr', '')[-200:]}")
                            if not noisy:
                                break
                            time.sleep(0.5)
                    peak = server.stop()
                    if phase == "none":
                        entry = {"rss": sname, "round": rnd, "idle_kb": server.idle_kb, "peak_kb": peak}
                        rss[sname].append(entry)
                        record(entry)
            say(f"round {rnd} done after {time.monotonic() - began:.0f} s")
    finally:
        for server in list(Server.running):
            server.stop()
        journal.close()
        shutil.rmtree(work, ignore_errors=True)
    meta["repeated"] = repeated
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    summary = summarize(runs, rss, meta) + f"\nTotal wall time: {time.monotonic() - began:.0f} s\n"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    def stop_on_term(_signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop_on_term)
    sys.exit(main())
