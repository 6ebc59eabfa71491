# perf record -e cpu-clock of the server during a 5 s load with (on) or without (off) the 100 req/s /connz?subs=1 poll
import sys, os, subprocess, time
sys.path.insert(0, "/work/wt-connz/scripts")
import connz_poll as cp
from pinned_server import PinnedServer, free_port
bin_, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
os.sched_setaffinity(0, {1})
cp.raise_fd_limit(10000)
http_port = free_port()
with PinnedServer([bin_], ["-m", str(http_port)], stop_timeout_s=10) as server:
    conns = cp.open_idle(server.port, 10000, within=180)
    ans = cp.PingAnswerer(conns); ans.start()
    cp.run_load(bin_, server.port, 1.0, 128)
    poller = None
    if mode == "on":
        poller = cp.Poller(http_port, "/connz?subs=1", 100.0); poller.start(); time.sleep(0.5)
    perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-p", str(server.pid), "-o", out, "--", "sleep", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pub, sub = cp.run_load(bin_, server.port, 5.0, 128)
    perf.wait()
    if poller:
        poller.stop.set(); poller.join(10)
        print("polls", len(poller.latencies), "fails", poller.failures)
    print("pub", pub, "sub", sub)
