#!/usr/bin/python3
"""p3 benchmark harness, driven by perf/bench.sh (see perf/README.md). Suites: throughput (below),
rekey (perf/rekey/rekey_bench) and setup (perf/setup/setup_bench), whose samples are merged
into one results.json.

Throughput: p3d with static keys on W worker lcores and S sessions, next to the raw AES-GCM
bound of one core measured in the same run.

For every configuration (I/O x direction x key size x frame size x workers x sessions),
interleaved and repeated --runs times: raw_gcm measures ipsec-mb AES-GCM on the benchmark core
for that key, size and direction; then p3d starts on the W last CPUs with
  --io zc:   the receiving side is net_p3src (perf/src/p3src.c, loaded with EAL -d) playing the
             frames of perf/frames.py with no copy beyond what must be rewritten (outbound: the
             first 64 bytes, inbound: the whole frame), the other side a net_p3src sink
  --io pcap: outbound: LAN = net_pcap (rx_pcap=clear traffic, infinite_rx=1), WAN = net_null;
             inbound: WAN = net_pcap (the P3 traffic), LAN = net_null — the I/O other DPDK
             applications (ipsec-secgw) are compared on
(inbound: the static key has anti_replay = false, the looped input repeats its sequences)
and after a warm-up the packets it encrypted (decrypted) over --duration seconds are read
from its telemetry. Workers that never run out of input are busy all the time, so
cycles/packet = TSC Hz x duration x W / packets. Reported: median, min and max over the runs of
Mpps, Gbps (Ethernet frames, FCS included, no preamble/IFG), cycles/packet, the ratio to W times
the raw bound and, for W > 1, the scaling Mpps(W) / (W x Mpps(1)); a table, a JSON file and a
PNG chart (gnuplot).
"""
import argparse
import datetime
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOOLS = os.path.join(ROOT, "tests", "tools")
sys.path.insert(0, TOOLS)
import p3_telemetry  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "rekey"))
import pair  # noqa: E402  (the rekey suite's two-p3d part)
sys.path.insert(0, HERE)
import frames  # noqa: E402  (the throughput suite's remotes and frames)
from throughput_table import fmt_one, scaling, scaling_chart, table  # noqa: E402

SIZES = [64, 128, 256, 512, 1024, 1420]
IMIX_AVG = (7 * 64 + 4 * 594 + 1420) / 12.0
# Issue targets for one worker lcore, as a fraction of the same-run raw bound.
TARGETS = {"64": 0.50, "512": 0.70, "1420": 0.85, "imix": 0.75}

# The peers sit behind the WAN gateway and the LAN hosts behind the LAN gateway, both with
# static MACs: no ARP on the measured path (an on-link peer would be resolved first).
LOCAL = frames.LOCAL
# Outbound, p3d reads the Ethernet, IPv4 and UDP headers of a clear frame and encrypts the rest
# in place whatever its bytes: net_p3src rewrites the first 64 bytes of each. Inbound, the whole
# frame is opened in place: it is rewritten whole.
ZC_HEAD = {"out": 64, "in": 0}


class Bench:
    def __init__(self, a):
        self.a = a
        self.build = os.path.abspath(a.build)
        self.p3d = os.path.join(self.build, "p3d", "p3d")
        self.raw = os.path.join(self.build, "perf", "raw_gcm")
        self.p3src = os.path.join(self.build, "perf", "librte_net_p3src.so")
        self.work = tempfile.mkdtemp(prefix="p3bench-")
        self.log = open(os.path.join(a.out, "bench.log"), "w")
        self.prefix = "p3bench-%d" % os.getpid()
        self.proc = None

    def say(self, *msg):
        line = " ".join(str(m) for m in msg)
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def cleanup(self):
        self.stop_p3d()
        shutil.rmtree("/var/run/dpdk/" + self.prefix, ignore_errors=True)
        if not self.a.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    # --- inputs --------------------------------------------------------------------------
    def frames_file(self, direction, size, key_bits, sessions, lanes, io):
        """The looped input of one point (perf/frames.py): clear traffic to the S remotes'
        subnets (outbound), or what those remotes send us on L lanes (inbound). zc frames are
        few (--packets, default 128, at least one per session and lane) so that the templates
        stay in the worker's L2 cache; the pcap PMD gets 512, as before."""
        count = self.a.packets or (128 if io == "zc" else 512)
        count = max(count, sessions * lanes)
        path = os.path.join(self.work, "%s-%s-%d-s%d-l%d-%d.pcap" % (direction, size, key_bits, sessions, lanes, count))
        if not os.path.exists(path):
            fr = (frames.outbound(size, count, sessions) if direction == "out"
                  else frames.inbound(size, count, sessions, lanes, key_bits))
            frames.write_pcap(path, fr)
        return path

    def config(self, key_bits, direction, io, workers, sessions):
        src, sink = ("net_p3src0", "net_p3src1") if io == "zc" else ("net_pcap0", "net_null0")
        lan, wan = (src, sink) if direction == "out" else (sink, src)
        path = os.path.join(self.work, "p3d-%d-%s-%s-w%d-s%d.conf" % (key_bits, direction, io, workers, sessions))
        # One RX queue per worker (RSS; net_p3src spreads its frames as a NIC would). With more
        # workers than spare CPUs the control thread shares one: a worker with nothing to poll
        # (inbound, the LAN sink) sleeps 20 us after 256 empty polls instead of spinning.
        with open(path, "w") as f:
            f.write("""role = "primary";
local = { ip = 4; address = "%s"; port = 5653; state_dir = "%s";
          subnets = [ "10.1.5.0/24" ]; };   # our hosts, behind the LAN gateway
dataplane = {
  lan = { port = "%s"; address = "10.1.0.1/24"; gateway = "10.1.0.254"; gateway_mac = "02:00:00:00:00:fd"; };
  wan = { port = "%s"; address = "%s/24"; gateway = "192.0.2.254"; gateway_mac = "02:00:00:00:00:fe"; mtu = 1500; };
  rx_queues = %d;
  idle_backoff_us = %d;
};
remotes = (
%s
);
""" % (LOCAL, os.path.join(self.work, "state"), lan, wan, LOCAL, 0 if workers > 1 else 1,
                20 if workers > 1 else 0,
                # Inbound loops one capture, so its sequences repeat from the second pass on:
                # with a window every packet after the first pass would be a replay. The tag
                # is checked as ever; what is not measured is the window (dp_bench has it).
                frames.remotes_conf(key_bits, sessions, workers, direction != "in")))
        os.chmod(path, 0o600)
        return path

    # --- processes -----------------------------------------------------------------------
    def high_priority(self, cmd):
        """Own scheduler group at the highest priority, as on a dedicated appliance."""
        inner = " ".join("'%s'" % c.replace("'", "'\\''") for c in cmd)
        return ["setsid", "sh", "-c", "echo -20 >/proc/self/autogroup 2>/dev/null; exec nice -n -20 " + inner]

    def raw_bound(self, key_bits, direction, size):
        cmd = ["taskset", "-c", str(self.a.core), self.raw, "--keys", str(key_bits), "--json",
               "--seconds", str(self.a.raw_seconds)]
        cmd += ["--imix-only"] if size == "imix" else ["--sizes", str(size)]
        out = subprocess.run(self.high_priority(cmd), check=True, capture_output=True, text=True).stdout
        data = json.loads(out)
        want = "encrypt" if direction == "out" else "decrypt"
        r = [x for x in data["results"] if x["dir"] == want][0]
        return r, data

    def start_p3d(self, conf, pcap, direction="out", io="pcap", workers=1):
        shutil.rmtree("/var/run/dpdk/" + self.prefix, ignore_errors=True)
        mem = [] if self.a.hugepages else ["--no-huge", "-m", "512"]
        first = max(0, self.a.core - workers + 1)
        cores = str(self.a.core) if workers == 1 else "%d-%d" % (first, first + workers - 1)
        if io == "zc":
            head = ",head=%d" % ZC_HEAD[direction] if ZC_HEAD[direction] else ""
            ports = ["-d", self.p3src, "--vdev", "net_p3src0,pcap=%s,mac=%s%s" % (pcap, frames.DST_MAC, head),
                     "--vdev", "net_p3src1,sink=1"]
        else:
            # net_pcap: one RX queue (and TX queue) per rx_pcap, each playing the whole capture.
            rx = ",".join(["rx_pcap=%s" % pcap] * workers)
            ports = ["--vdev", "net_pcap0,%s,infinite_rx=1" % rx, "--vdev", "net_null0,no-rx=1"]
        cmd = [self.p3d] + mem + ["--no-pci", "--file-prefix", self.prefix, "-l", cores] + ports + [
               "--", "-c", conf, "-f"]
        self.p3d_log = os.path.join(self.work, "p3d.log")
        self.proc = subprocess.Popen(self.high_priority(cmd), stdout=open(self.p3d_log, "w"),
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("p3d exited (%d) before starting:\n%s" % (self.proc.returncode, self.tail()))
            if "P3-I0001" in open(self.p3d_log).read():
                if p3_telemetry.main(["", self.prefix, "--wait-socket", "10"]) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("p3d did not start within 20 s:\n" + self.tail())

    def tail(self):
        try:
            return "".join(open(self.p3d_log).readlines()[-20:])
        except OSError:
            return ""

    def stop_p3d(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        shutil.rmtree("/var/run/dpdk/" + self.prefix, ignore_errors=True)

    def stats(self):
        return p3_telemetry.query(self.prefix, "/p3/stats"), time.monotonic()

    def per_worker(self, direction):
        """Packets each worker encrypted (decrypted) so far (/p3/lcores): shows whether the load
        spread (inbound, one session: one worker until its lanes are handed over)."""
        key = "encrypted" if direction == "out" else "decrypted"
        try:
            lc = p3_telemetry.query(self.prefix, "/p3/lcores")
        except Exception:  # noqa: BLE001  (a figure for the report, not the measurement)
            return None
        rows = lc.get("lcores", lc) if isinstance(lc, dict) else lc
        if isinstance(rows, dict):
            rows = list(rows.values())
        if not isinstance(rows, list):
            return None
        return [r.get(key, 0) for r in rows if isinstance(r, dict)]

    def p3d_pid(self):
        # setsid sh -c 'exec nice ... p3d': the session leader becomes p3d itself
        return self.proc.pid

    # --- one measurement -----------------------------------------------------------------
    def measure(self, io, direction, key_bits, size, workers=1, sessions=1, profile=False):
        raw, raw_all = self.raw_bound(key_bits, direction, size)
        pcap = self.frames_file(direction, size, key_bits, sessions, workers, io)
        self.start_p3d(self.config(key_bits, direction, io, workers, sessions), pcap, direction, io, workers)
        try:
            time.sleep(self.a.warmup)
            s0, t0 = self.stats()
            prof = None
            if profile:
                prof = subprocess.Popen(["perf", "record", "-F", "1999", "-g", "-o",
                                         os.path.join(self.a.out, "perf-%s-%d-%s.data" % (direction, key_bits, size)),
                                         "-p", str(self.p3d_pid())], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            time.sleep(self.a.duration)
            s1, t1 = self.stats()
            if prof:
                prof.send_signal(signal.SIGINT)
                prof.wait(30)
            drops = p3_telemetry.query(self.prefix, "/p3/drops")
            per_worker = self.per_worker(direction)
        finally:
            self.stop_p3d()
        d = {k: s1.get(k, 0) - s0.get(k, 0) for k in s1 if isinstance(s1.get(k), int)}
        dt = t1 - t0
        done_key = "encrypted" if direction == "out" else "decrypted"
        rx_key = "rx_lan_pkts" if direction == "out" else "rx_wan_pkts"
        done = d.get(done_key, 0)
        hz = raw_all["tsc_hz"]
        avg = IMIX_AVG if size == "imix" else float(size)
        pps = done / dt if dt > 0 else 0.0
        m = {
            "io": io, "dir": direction, "key": key_bits, "size": str(size), "workers": workers,
            "sessions": sessions, "avg_frame": avg, "seconds": dt,
            "packets": done, "received": d.get(rx_key, 0), "dropped": d.get("dropped", 0),
            "mpps": pps / 1e6, "gbps": pps * avg * 8 / 1e9,
            "cycles": hz * dt * workers / done if done else None,
            "raw_mpps": raw["mpps"], "raw_cycles": raw["cycles"], "raw_gbps": raw["gbps"],
            "ratio": (pps / 1e6) / (workers * raw["mpps"]) if raw["mpps"] else None,
            "per_worker": per_worker,
            "top_drops": sorted(((v, k) for k, v in drops.items() if isinstance(v, int) and v), reverse=True)[:4],
        }
        if done == 0:
            m["note"] = "p3d %s nothing (received %d, drops %s)" % (done_key, m["received"], m["top_drops"])
        return m, raw_all

    # --- the suites ----------------------------------------------------------------------
    def throughput(self):
        a = self.a
        sizes = [str(s) for s in a.sizes] + (["imix"] if a.imix else [])
        configs = [(i, d, k, s, w, n) for i in a.io for d in a.dirs for k in a.keys for s in sizes
                   for w in a.workers for n in a.sessions]
        samples = {c: [] for c in configs}
        env = {}
        for run in range(a.runs):
            order = configs[:]
            random.Random(run).shuffle(order)  # interleaved, a different order each run
            for c in order:
                m, raw_all = self.measure(*c)
                env = {k: raw_all[k] for k in ("ipsec_mb", "arch", "tsc_hz")}
                samples[c].append(m)
                self.say("run %d/%d  %-4s %-3s AES-%d %5s W%d S%-4d: %s" % ((run + 1, a.runs) + c + (fmt_one(m),)))
        rows = []
        for c in configs:
            ms = samples[c]
            row = {"io": c[0], "dir": c[1], "key": c[2], "size": c[3], "workers": c[4], "sessions": c[5],
                   "avg_frame": ms[0]["avg_frame"], "runs": len(ms)}
            for f in ("mpps", "gbps", "cycles", "raw_mpps", "raw_gbps", "raw_cycles", "ratio"):
                vals = [m[f] for m in ms if m[f] is not None]
                if vals:
                    row[f] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
            row["notes"] = sorted({m["note"] for m in ms if "note" in m})
            row["top_drops"] = ms[-1]["top_drops"]
            t = TARGETS.get(c[3])
            if t is not None and "ratio" in row:
                row["target"] = t
                row["meets_target"] = row["ratio"]["median"] >= t
            rows.append(row)
        scaling(rows)
        profiles = []
        if a.profile:
            for d in a.dirs:
                for s in sizes:
                    m, _ = self.measure(a.io[0], d, a.keys[0], s, profile=True)
                    split = self.split_cycles(m)
                    profiles.append(split)
                    self.say("profiled %s AES-%d %s: %s" % (d, a.keys[0], s, fmt_one(m)))
                    if split.get("parts"):
                        self.say("  cycles per packet: " + ", ".join(
                            "%s %.0f" % (k, v) for k, v in split["parts"].items()) +
                            " | best ratio without p3d's own: %.0f%%" % (100 * split["ceiling"]))
        return {"env": env, "rows": rows, "profiles": profiles,
                "samples": {"%s/%s/%d/%s/w%d/s%d" % c: v for c, v in samples.items()}}

    def split_cycles(self, m):
        """Where one packet's cycles go, from the perf samples of the profiled run: AES-GCM
        (ipsec-mb), p3d's own code, the test I/O (the pcap and null PMDs, the mempool), the
        rest (kernel, libc). ceiling = the ratio to the raw bound p3d would reach if its own
        code took no time at all, with the same I/O."""
        data = os.path.join(self.a.out, "perf-%s-%d-%s.data" % (m["dir"], m["key"], m["size"]))
        out = {"dir": m["dir"], "key": m["key"], "size": m["size"], "cycles": m["cycles"]}
        try:
            # The worker is the main thread (comm "p3d"); the control thread (p3-ctl) runs elsewhere.
            rep = subprocess.run(["perf", "report", "-i", data, "--comms", "p3d", "--no-children", "--sort", "dso", "-g", "none",
                                  "--stdio"], capture_output=True, text=True, timeout=120).stdout
        except (OSError, subprocess.TimeoutExpired):
            return out
        share = {"aes-gcm": 0.0, "p3d": 0.0, "test i/o": 0.0, "other": 0.0}
        for line in rep.splitlines():
            f = line.split()
            if len(f) < 2 or not f[0].endswith("%"):
                continue
            pct, dso = float(f[0][:-1]) / 100, f[1]
            if "IPSec_MB" in dso:
                share["aes-gcm"] += pct
            elif dso == "p3d":
                share["p3d"] += pct
            elif "rte_net_pcap" in dso or "rte_net_null" in dso or "rte_mempool" in dso or "p3src" in dso:
                share["test i/o"] += pct
            else:
                share["other"] += pct
        total = sum(share.values())
        if not m["cycles"] or total <= 0:
            return out
        out["parts"] = {k: m["cycles"] * v / total for k, v in share.items()}
        rest = m["cycles"] - out["parts"]["p3d"]
        out["ceiling"] = m["raw_cycles"] / rest if rest > 0 else None
        return out


def chart(result, out_dir):
    """PNG: Gbps against frame size, p3d per I/O, direction, workers and sessions (the first key
    measured), the raw bound of one core drawn per direction."""
    gp = shutil.which("gnuplot")
    if not gp:
        return None
    scaling_chart(result, out_dir, gp)
    rows = [r for r in result["rows"] if "mpps" in r and r["size"] != "imix"]
    if not rows:
        return None
    key = min(r["key"] for r in rows)
    rows = [r for r in rows if r["key"] == key]
    dat = os.path.join(out_dir, "throughput.dat")
    series = []
    with open(dat, "w") as f:
        for c in sorted({(r["io"], r["dir"], r["workers"], r["sessions"]) for r in rows},
                        key=lambda c: (c[1] != "out", c[0] != "zc", c[2], c[3])):
            rs = sorted((r for r in rows if (r["io"], r["dir"], r["workers"], r["sessions"]) == c),
                        key=lambda r: int(r["size"]))
            f.write("# %s %s W%d S%d AES-%d: frame gbps min max raw_gbps raw_min raw_max\n" % (c + (key,)))
            for r in rs:
                f.write("%s %.4f %.4f %.4f %.4f %.4f %.4f\n" % (
                    r["size"], r["gbps"]["median"], r["gbps"]["min"], r["gbps"]["max"],
                    r["raw_gbps"]["median"], r["raw_gbps"]["min"], r["raw_gbps"]["max"]))
            f.write("\n\n")
            series.append(c)
    png = os.path.join(out_dir, "throughput.png")
    name = {"out": "out", "in": "in"}
    palette = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
    plots, raw_done = [], set()
    for i, (io, d, w, n) in enumerate(series):
        plots.append("'%s' index %d using 1:2:3:4 with yerrorlines lw 2 pt %d dt %d lc rgb '%s' title 'p3d %s, %s, %d worker%s, %d session%s'" % (
            dat, i, 7 if w == 1 else 5, 1 if io == "zc" else 3, palette[i % len(palette)], name[d], io, w,
            "s" if w > 1 else "", n, "s" if n > 1 else ""))
        if d not in raw_done:
            raw_done.add(d)
            plots.append("'%s' index %d using 1:5 with lines dt %d lw 1 lc rgb 'black' title 'raw AES-GCM-%d %s, one core'" % (
                dat, i, 2 if d == "out" else 4, key, "encrypt" if d == "out" else "decrypt"))
    script = """set terminal pngcairo size 1100,650 font ',11'
set output '%s'
set title 'p3d throughput vs raw ipsec-mb AES-GCM on one core (median, min..max)'
set xlabel 'Ethernet frame size (bytes, FCS included)'
set ylabel 'Gbit/s (frames)'
set logscale x 2
set xtics (64,128,256,512,1024,1420)
set grid
set key top left
plot %s
""" % (png, ", \\\n     ".join(plots))
    sp = os.path.join(out_dir, "throughput.gp")
    with open(sp, "w") as f:
        f.write(script)
    r = subprocess.run([gp, sp], capture_output=True, text=True)
    if r.returncode != 0:
        # pngcairo may be missing from a minimal gnuplot: fall back to the plain png terminal
        script = script.replace("set terminal pngcairo size 1100,650 font ',11'", "set terminal png size 1100,650")
        with open(sp, "w") as f:
            f.write(script)
        r = subprocess.run([gp, sp], capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            return None
    return png


SUITES = {
    "throughput": "dataplane throughput vs the raw AES-GCM bound",
    "rekey": "N rekeys under load through two dataplanes and control channels, every packet counted",
    "setup": "session setups per second, time for a primary to bring up N secondaries, memory per session",
    "swarm": "one real p3d primary and N secondaries over a veth (perf/swarm): setups/s, memory, control CPU, rekeys",
}


def program_suite(b, name, prog, args, tag=""):
    """Runs one of the suite programs (perf/rekey, perf/setup) with --json, at high priority,
    passing its table through; returns its JSON (samples) and whether it passed."""
    exe = os.path.join(b.build, "perf", name, prog)
    if not os.access(exe, os.X_OK):
        raise RuntimeError("%s is not built (ninja -C %s perf/%s/%s)" % (exe, b.build, name, prog))
    js = os.path.join(b.work, name + tag + ".json")
    cmd = b.high_priority([exe] + args + ["--json", js])
    b.say("%s: %s" % (name, " ".join([prog] + args)))
    r = subprocess.run(cmd, text=True, capture_output=True)
    sys.stdout.write(r.stdout)
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-4000:])
    try:
        with open(js) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {"suite": name, "samples": []}
    data["exit_status"] = r.returncode
    data["passed"] = r.returncode == 0
    return data


def rekey_suite(b):
    """rekey_bench --runs times (one sample each), summarised as median [min..max]."""
    a = b.a
    args = ["--smoke"] if a.smoke else ["--rekeys", str(a.rekeys)]
    runs = [program_suite(b, "rekey", "rekey_bench", args, tag="-%d" % i) for i in range(a.runs)]
    data = {"suite": "rekey", "samples": [s for r in runs for s in r.get("samples", [])],
            "exit_status": max(r["exit_status"] for r in runs), "passed": all(r["passed"] for r in runs)}
    ss = data["samples"]
    if ss:
        def mmm(k):
            v = [s[k] for s in ss if isinstance(s.get(k), (int, float))]
            return (statistics.median(v), min(v), max(v)) if v else (float("nan"),) * 3
        bad = sum(s.get(k, 0) for s in ss for k in ("lost", "duplicated", "corrupted", "auth_failed", "replayed"))
        r, p50, pps = mmm("rekeys_per_s"), mmm("rekey_ms_p50"), mmm("pps")
        data["summary"] = {"runs": len(ss), "rekeys_per_s": r, "rekey_ms_p50": p50, "pps": pps, "bad_packets": bad}
        b.say("rekey: %d run(s) of %s rekeys: %.0f rekeys/s [%.0f..%.0f], p50 %.2f ms, %.2f Mpps under way; "
              "lost+duplicated+corrupted+auth failed+replayed = %d" % (
                  len(ss), ss[0].get("rekeys"), r[0], r[1], r[2], p50[0], pps[0] / 1e6, bad))
    # Two real p3d (perf/rekey/pair.py): a measurement with target 0, not a pass/fail gate.
    if a.pair:
        data["pair"] = pair.run(b, "p3bp%d" % os.getpid())
    return data


def rekey_table(data):
    """The rekey suite's lines for table.txt."""
    lines = []
    s = data.get("summary")
    if s:
        lines.append("rekey, rekey_bench (%d run(s)): %.0f rekeys/s, p50 %.2f ms per rekey, bad packets %d" % (
            s["runs"], s["rekeys_per_s"][0], s["rekey_ms_p50"][0], s["bad_packets"]))
    if "pair" in data:
        lines += pair.table(data["pair"])
    return "\n".join(lines)


def setup_suite(b):
    a = b.a
    args = ["--smoke"] if a.smoke else ["--remotes", str(a.remotes), "--runs", str(a.runs)]
    return program_suite(b, "setup", "setup_bench", args)


def swarm_suite(b):
    """Builds p3-swarm, runs perf/swarm/swarm.py (one real p3d per point, root only); its JSON."""
    a = b.a
    subprocess.run(["ninja", "-C", a.build, "perf/swarm/p3-swarm"], check=True, stdout=subprocess.DEVNULL)
    js = os.path.join(b.work, "swarm.json")
    args = ["--smoke"] if a.smoke else ["--n", a.swarm_n, "--rekey", a.swarm_rekey]
    if a.swarm_duration:
        args += ["--duration", str(a.swarm_duration)]
    if a.swarm_connect_rate:
        args += ["--connect-rate", str(a.swarm_connect_rate)]
    r = subprocess.run([sys.executable, os.path.join(HERE, "swarm", "swarm.py"), "--build", a.build, "--json", js] + args)
    try:
        with open(js) as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = {"suite": "swarm", "samples": [], "passed": False}
    data["exit_status"] = r.returncode
    data["passed"] = r.returncode == 0
    return data


def main():
    ap = argparse.ArgumentParser(description="p3 benchmark harness")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=None, help="results directory (default perf/results/DATE)")
    ap.add_argument("--suite", action="append", choices=sorted(SUITES) + ["all"], help="default: throughput")
    ap.add_argument("--rekeys", type=int, default=1000, help="rekey suite: rekeys under load")
    ap.add_argument("--remotes", type=int, default=1000, help="setup suite: secondaries brought up at once")
    ap.add_argument("--swarm-n", default="1000,5000", help="swarm suite: secondaries per point")
    ap.add_argument("--swarm-rekey", default="600,60", help="swarm suite: rekey_wait per point (s)")
    ap.add_argument("--swarm-duration", type=float, default=None, help="swarm suite: steady window (default 1.15 x rekey_wait)")
    ap.add_argument("--swarm-connect-rate", type=float, default=0, help="swarm suite: secondaries started per second (0: all at once)")
    ap.add_argument("--no-pair", dest="pair", action="store_false", help="rekey suite: skip the two-p3d part")
    ap.add_argument("--pair-start-rate", type=float, default=5000, help="rekey pair: first rate tried (datagrams/s each way)")
    ap.add_argument("--pair-max-rate", type=float, default=400000, help="rekey pair: highest rate tried")
    ap.add_argument("--pair-steps", type=int, default=8, help="rekey pair: trials of the search at most")
    ap.add_argument("--pair-trial", type=float, default=2.0, help="rekey pair: seconds per search trial")
    ap.add_argument("--pair-duration", type=float, default=15.0, help="rekey pair: seconds with a rekey every second")
    ap.add_argument("--pair-confirm", type=int, default=4,
                    help="rekey pair: full-length runs without rekeys to confirm the rate (15%% lower after a loss)")
    ap.add_argument("--pair-size", type=int, default=64, help="rekey pair: UDP payload bytes")
    ap.add_argument("--sizes", default=None, help="frame sizes (default %s; --smoke: 64,1420)" % ",".join(map(str, SIZES)))
    ap.add_argument("--no-imix", dest="imix", action="store_false")
    ap.add_argument("--keys", default="128,256")
    ap.add_argument("--dirs", default="out,in", help="out (encrypt), in (decrypt), or both")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=2.0, help="seconds measured per point")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--raw-seconds", type=float, default=0.3)
    ap.add_argument("--packets", type=int, default=0, help="frames in each looped input (default: 128 zc, 512 pcap)")
    # The throughput suite's I/O, workers and sessions (perf/README.md).
    ap.add_argument("--io", default="zc", help="zc (net_p3src, perf/src/p3src.c), pcap (net_pcap + net_null), or both")
    ap.add_argument("--workers", default=None, help="worker lcores of p3d (default 1,2; --smoke: 1)")
    ap.add_argument("--sessions", default=None, help="remotes with static keys the traffic spreads over (default 1,64; --smoke: 1)")
    ap.add_argument("--core", type=int, default=None, help="CPU for p3d's worker and raw_gcm (default: last)")
    ap.add_argument("--profile", action="store_true", help="then perf record p3d once per size (first key): cycles per packet in AES-GCM, p3d, "
                         "the test I/O and the rest")
    ap.add_argument("--hugepages", action="store_true", help="run p3d in hugepage memory (a real appliance)")
    ap.add_argument("--smoke", action="store_true", help="tiny durations: checks the harness, not the numbers")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (pcaps, configs, logs)")
    a = ap.parse_args()
    if a.smoke:
        a.sizes = a.sizes or "64,1420"
        a.keys, a.runs, a.duration, a.warmup, a.raw_seconds, a.packets = "128", 1, 0.3, 0.2, 0.05, 64
        a.pair_start_rate, a.pair_steps, a.pair_trial, a.pair_duration, a.pair_confirm = 1000, 1, 0.5, 3.0, 1
    a.sizes = [int(x) for x in (a.sizes or ",".join(map(str, SIZES))).split(",") if x]
    a.keys = [int(x) for x in a.keys.split(",") if x]
    a.dirs = [x for x in a.dirs.split(",") if x]
    a.io = [x for x in a.io.split(",") if x]
    a.workers = a.workers or ("1" if a.smoke else "1,2")
    a.sessions = a.sessions or ("1" if a.smoke else "1,64")
    a.workers = [int(x) for x in a.workers.split(",") if x]
    a.sessions = [int(x) for x in a.sessions.split(",") if x]
    if not set(a.io) <= {"zc", "pcap"} or not a.io or min(a.workers or [0]) < 1 or min(a.sessions or [0]) < 1:
        ap.error("--io takes zc and/or pcap, --workers and --sessions positive numbers")
    if a.core is None:
        a.core = (os.cpu_count() or 1) - 1
    if a.out is None:
        a.out = os.path.join(HERE, "results", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(a.out, exist_ok=True)
    suites = a.suite or ["throughput"]
    if "all" in suites:
        suites = ["throughput", "rekey", "setup"]

    b = Bench(a)
    result = {"tool": "p3 bench", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "args": {k: v for k, v in vars(a).items() if k not in ("out",)}, "suites": {}}
    rc = 0
    try:
        for s in suites:
            if s == "throughput":
                if "zc" in a.io:  # the zero-copy source, built here rather than in bench.sh
                    subprocess.run(["ninja", "-C", b.build, "perf/librte_net_p3src.so"], stdout=subprocess.DEVNULL)
                for f in (b.p3d, b.raw) + ((b.p3src,) if "zc" in a.io else ()):
                    if not os.access(f, os.X_OK):
                        print("bench: %s is not built (ninja -C %s)" % (f, a.build), file=sys.stderr)
                        return 2
                result["suites"][s] = b.throughput()
            else:
                data = {"rekey": rekey_suite, "setup": setup_suite, "swarm": swarm_suite}[s](b)
                result["suites"][s] = data
                if not data["passed"]:
                    rc = 1
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print("bench: %s" % e, file=sys.stderr)
        rc = 1
    finally:
        b.cleanup()
    js = os.path.join(a.out, "results.json")
    with open(js, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    tables = []
    if "throughput" in result["suites"]:
        tables.append(table(result["suites"]["throughput"]))
    if "rekey" in result["suites"]:
        tables.append(rekey_table(result["suites"]["rekey"]))
    if tables:
        t = "\n\n".join(x for x in tables if x)
        with open(os.path.join(a.out, "table.txt"), "w") as f:
            f.write(t + "\n")
        print()
        print(t)
    if "throughput" in result["suites"]:
        png = chart(result["suites"]["throughput"], a.out)
        print("chart:   %s" % (png or "(gnuplot not available)"))
    for s in ("rekey", "setup", "swarm"):
        if s in result["suites"]:
            print("%s: %s" % (s, "passed" if result["suites"][s]["passed"] else "FAILED (see above)"))
    print("results: %s" % js)
    return rc


if __name__ == "__main__":
    sys.exit(main())
