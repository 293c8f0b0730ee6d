#!/usr/bin/python3
"""p3d against DPDK's ipsec-secgw on the same I/O (perf/README.md, "Against ipsec-secgw").

  perf/bench.sh --suite secgw --secgw PATH [--runs N] [--duration S] [--sizes 64,1420] [--no-imix]
                [--dirs out,in] [--core N] [--pmd crypto_aesni_gcm] [--sa-type no-offload] [--out DIR]

For every direction and frame size, --runs times in a shuffled order, p3d and ipsec-secgw
(unmodified, built from DPDK's examples/ipsec-secgw) run one after the other, which one first
alternating, each with one worker lcore on CPU --core, AES-GCM-128 under the same key, and
  outbound: port 0 = net_pcap rx_pcap=clear frames,infinite_rx=1 (LAN), port 1 = net_null (WAN)
  inbound:  port 0 = net_pcap rx_pcap=sealed frames,infinite_rx=1 (WAN), port 1 = net_null (LAN)
(inbound p3d reads P3, ipsec-secgw ESP: the same inner packets, frames of the same size). After
--warmup seconds the packets sent on the net_null port over --duration seconds are read from
DPDK telemetry (/ethdev/stats,1: opackets, obytes), the same way for both programs. Reported:
median [min..max] Mpps of each and the ratio p3d / ipsec-secgw, in a table (DIR/secgw.txt) and
in DIR/results.json (suites.secgw). Without --secgw, or when it is not an executable, the suite
is skipped with a message and exit status 0 (CI machines have no ipsec-secgw).
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
PERF = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import inputs  # noqa: E402  (also puts tests/tools on the path)
import p3_telemetry  # noqa: E402

# Goals: p3d's packet rate as a multiple of ipsec-secgw's on this comparison.
TARGETS = {"64": 2.0, "1420": 1.3, "imix": 1.5}
NULL_PORT, PCAP_PORT = 1, 0


def high_priority(cmd, env=None):
    """Own scheduler group at the highest priority, as the throughput suite runs p3d."""
    inner = " ".join("'%s'" % c.replace("'", "'\\''") for c in cmd)
    pre = "".join("%s='%s' " % kv for kv in (env or {}).items())
    return ["setsid", "sh", "-c", "echo -20 >/proc/self/autogroup 2>/dev/null; exec nice -n -20 env %s%s" % (pre, inner)]


class Cmp:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="p3cmp-")
        self.prefix = "p3cmp-%d" % os.getpid()
        self.p3d = os.path.join(os.path.abspath(a.build), "p3d", "p3d")
        self.proc = None
        self.log_path = None
        self.shim = None
        self.commands = {}     # the last command line of each program and direction, for the record
        self.logf = open(os.path.join(a.out, "secgw.log"), "w")

    def say(self, *msg):
        line = " ".join(str(m) for m in msg)
        print(line, flush=True)
        self.logf.write(line + "\n")
        self.logf.flush()

    def cleanup(self):
        self.stop()
        if not self.a.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            self.say("kept: %s" % self.work)

    def build_shim(self):
        """ipsec-secgw insists on RX checksum offload, which net_pcap / net_null lack: see
        offload_shim.c. Built here with libdpdk's flags (present wherever secgw was built)."""
        out = os.path.join(self.work, "offload_shim.so")
        flags = subprocess.run(["pkg-config", "--cflags", "libdpdk"], check=True, capture_output=True,
                               text=True).stdout.split()
        subprocess.run(["cc", "-O2", "-shared", "-fPIC"] + flags + [os.path.join(HERE, "offload_shim.c"),
                        "-o", out, "-ldl"], check=True)
        self.shim = out

    # --- processes -----------------------------------------------------------------------
    def eal(self, pcap):
        mem = [] if self.a.hugepages else ["--no-huge", "-m", "512"]
        return mem + ["--no-pci", "--file-prefix", self.prefix, "-l", str(self.a.core),
                      "--vdev", "net_pcap0,rx_pcap=%s,infinite_rx=1" % pcap, "--vdev", "net_null0,no-rx=1"]

    def secgw_cmd(self, direction, pcap):
        a = self.a
        cfg = inputs.secgw_config(self.work, direction, a.sa_type)
        # -u: the ports that carry ESP (ipsec-secgw's "unprotected" side): the WAN.
        unprot = "0x2" if direction == "out" else "0x1"
        args = ["-p", "0x3", "-P", "-u", unprot, "--config", "(0,0,%d),(1,0,%d)" % (a.core, a.core), "-f", cfg]
        if a.sa_type == "cpu-crypto":
            args.insert(0, "-l")     # cpu-crypto runs on the librte_ipsec path only
        return [a.secgw] + self.eal(pcap) + ["--vdev", a.pmd, "--"] + args

    def p3d_cmd(self, direction, pcap):
        return [self.p3d] + self.eal(pcap) + ["--", "-c", inputs.p3d_config(self.work, direction), "-f"]

    def start(self, prog, direction, pcap):
        shutil.rmtree("/var/run/dpdk/" + self.prefix, ignore_errors=True)
        if prog == "secgw":
            cmd = high_priority(self.secgw_cmd(direction, pcap), {"LD_PRELOAD": self.shim})
        else:
            cmd = high_priority(self.p3d_cmd(direction, pcap))
        self.commands["%s %s" % (prog, direction)] = " ".join(cmd[-1:] if cmd[0] == "setsid" else cmd)
        self.log_path = os.path.join(self.work, "%s-%s.log" % (prog, direction))
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        # Ready when packets leave on the null port: it forwards (and, inbound, decrypts).
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited (%d) before forwarding:\n%s" % (prog, self.proc.returncode, self.tail()))
            try:
                if self.port_stats(NULL_PORT)["opackets"] > 0:
                    return
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.1)
        raise RuntimeError("%s sent nothing on the null port within 30 s:\n%s" % (prog, self.tail()))

    def tail(self):
        try:
            return "".join(open(self.log_path, errors="replace").readlines()[-25:])
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        shutil.rmtree("/var/run/dpdk/" + self.prefix, ignore_errors=True)

    def port_stats(self, port):
        return p3_telemetry.query(self.prefix, "/ethdev/stats,%d" % port)

    # --- one measurement -----------------------------------------------------------------
    def measure(self, prog, direction, size):
        a = self.a
        if direction == "out":
            pcap = inputs.clear_capture(self.work, size, a.packets)
        elif prog == "secgw":
            pcap = inputs.esp_capture(self.work, size, a.packets)
        else:
            pcap = inputs.p3_capture(self.work, size, a.packets)
        self.start(prog, direction, pcap)
        try:
            time.sleep(a.warmup)
            # the window is timed at the null port's reads (one telemetry query takes some ms)
            i0 = self.port_stats(PCAP_PORT)
            o0, t0 = self.port_stats(NULL_PORT), time.monotonic()
            time.sleep(a.duration)
            o1, t1 = self.port_stats(NULL_PORT), time.monotonic()
            # the null port again: its count when the pcap port was read is taken as the mean
            # of the reads before and after
            i1 = self.port_stats(PCAP_PORT)
            o2 = self.port_stats(NULL_PORT)
            extra = self.drops(prog)
        finally:
            self.stop()
        dt = t1 - t0
        rx, tx = i1["ipackets"] - i0["ipackets"], o1["opackets"] - o0["opackets"]
        m = {"prog": prog, "dir": direction, "size": str(size), "seconds": dt, "received": rx, "sent": tx,
             "mpps": tx / dt / 1e6 if dt > 0 else 0.0,
             # bytes per frame read (+ FCS); net_null counts no bytes sent
             "in_frame": (i1["ibytes"] - i0["ibytes"]) / rx + 4 if rx else None,
             # read and never sent since the start (what is in flight, a few bursts, counts too)
             "not_sent": (i1["ipackets"] - (o1["opackets"] + o2["opackets"]) / 2) / i1["ipackets"]
             if i1["ipackets"] else None,
             "drops": extra}
        return m

    def drops(self, prog):
        """p3d's non-zero drop counters (ipsec-secgw has no telemetry of its own)."""
        if prog != "p3d":
            return None
        try:
            d = p3_telemetry.query(self.prefix, "/p3/drops")
        except (OSError, ValueError):
            return None
        return {k: v for k, v in d.items() if isinstance(v, int) and v}

    # --- the suite -----------------------------------------------------------------------
    def run(self):
        a = self.a
        sizes = [str(s) for s in a.sizes] + (["imix"] if a.imix else [])
        points = [(d, s) for d in a.dirs for s in sizes]
        samples = {(p, d, s): [] for p in ("p3d", "secgw") for d, s in points}
        n = 0
        for run in range(a.runs):
            order = points[:]
            random.Random(run).shuffle(order)
            for d, s in order:
                progs = ("p3d", "secgw") if n % 2 == 0 else ("secgw", "p3d")
                n += 1
                for p in progs:
                    m = self.measure(p, d, s)
                    samples[(p, d, s)].append(m)
                    self.say("run %d/%d  %-3s %5s %-5s: %7.3f Mpps (read %d, sent %d over %.2f s; frames read "
                             "%.1f B)" % (run + 1, a.runs, d, s, p, m["mpps"], m["received"], m["sent"], m["seconds"],
                                          m["in_frame"] or 0))
        rows = [summarise(d, s, samples[("p3d", d, s)], samples[("secgw", d, s)]) for d, s in points]
        return {"rows": rows, "env": self.env(),
                "samples": {"%s/%s/%s" % k: v for k, v in samples.items()}}

    def env(self):
        e = {"pmd": self.a.pmd, "sa_type": self.a.sa_type, "core": self.a.core, "secgw": self.a.secgw,
             "runs": self.a.runs, "duration": self.a.duration, "loadavg": os.getloadavg(),
             "commands": self.commands}
        try:
            e["dpdk"] = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True,
                                       text=True).stdout.strip()
        except OSError:
            pass
        return e


def mmm(vals):
    vals = [v for v in vals if v is not None]
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)} if vals else None


def summarise(direction, size, p3d, secgw):
    row = {"dir": direction, "size": size, "runs": len(p3d),
           "p3d": mmm([m["mpps"] for m in p3d]), "secgw": mmm([m["mpps"] for m in secgw]),
           "p3d_frame_in": mmm([m["in_frame"] for m in p3d]), "secgw_frame_in": mmm([m["in_frame"] for m in secgw]),
           "p3d_not_sent": max((m["not_sent"] or 0) for m in p3d),
           "secgw_not_sent": max((m["not_sent"] or 0) for m in secgw)}
    if row["secgw"] and row["secgw"]["median"] > 0:
        row["ratio"] = row["p3d"]["median"] / row["secgw"]["median"]
        # the runs paired as they ran (the same run's p3d and ipsec-secgw, next to each other)
        pairs = [x["mpps"] / y["mpps"] for x, y in zip(p3d, secgw) if y["mpps"] > 0]
        row["ratio_runs"] = {"min": min(pairs), "max": max(pairs)} if pairs else None
        if size in TARGETS:
            row["target"] = TARGETS[size]
            row["meets_target"] = row["ratio"] >= TARGETS[size]
    return row


def table(result):
    e = result["env"]
    lines = ["p3d against DPDK %s ipsec-secgw (%s, SA type %s): one worker lcore on CPU %d, AES-GCM-128, "
             "net_pcap in, net_null out" % (e.get("dpdk", "?"), e["pmd"], e["sa_type"], e["core"]),
             "Mpps sent on the net_null port, median [min..max] over %d run(s) of %.1f s; ratio = p3d / "
             "ipsec-secgw (medians) [per-run pairs]; frame in = bytes per frame read (FCS included); not sent = "
             "read and never sent, worst run" % (e["runs"], e["duration"])]
    hdr = "%-4s %5s | %-23s | %-23s | %-22s %-9s | %-16s | %s" % (
        "dir", "frame", "p3d Mpps", "ipsec-secgw Mpps", "ratio", "goal", "frame in p3d/sg", "not sent p3d/sg")
    lines += [hdr, "-" * len(hdr)]
    for r in result["rows"]:
        p, s = r["p3d"], r["secgw"]
        goal = ""
        if "target" in r:
            goal = "%s %.1fx" % ("ok  " if r["meets_target"] else "MISS", r["target"])
        ratio = "-"
        if "ratio" in r:
            rr = r.get("ratio_runs") or {"min": r["ratio"], "max": r["ratio"]}
            ratio = "%.2fx [%.2f..%.2f]" % (r["ratio"], rr["min"], rr["max"])
        fi = "%6.1f / %6.1f" % (r["p3d_frame_in"]["median"], r["secgw_frame_in"]["median"]) \
            if r["p3d_frame_in"] and r["secgw_frame_in"] else "-"
        lines.append("%-4s %5s | %6.3f [%6.3f..%6.3f] | %6.3f [%6.3f..%6.3f] | %-22s %-9s | %-16s | %.2f%% / %.2f%%" % (
            r["dir"], r["size"], p["median"], p["min"], p["max"], s["median"], s["min"], s["max"], ratio, goal,
            fi, 100 * r["p3d_not_sent"], 100 * r["secgw_not_sent"]))
    la = e.get("loadavg")
    if la:
        lines.append("load average at the end: %.2f %.2f %.2f (a loaded machine skews both programs)" % tuple(la))
    return "\n".join(lines)


def write_results(out, result, args):
    """Into DIR/results.json as suites.secgw (merged with what bench.py wrote there), and
    DIR/secgw.txt."""
    js = os.path.join(out, "results.json")
    try:
        with open(js) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        doc = {"tool": "p3 bench", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "suites": {}}
    doc.setdefault("suites", {})["secgw"] = dict(result, args=args)
    with open(js, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    t = table(result)
    with open(os.path.join(out, "secgw.txt"), "w") as f:
        f.write(t + "\n")
    return js, t


def main():
    ap = argparse.ArgumentParser(description="p3d against DPDK ipsec-secgw on the same I/O")
    ap.add_argument("--secgw", default=None, help="the ipsec-secgw executable (else the suite is skipped)")
    ap.add_argument("--build", default=os.path.join(os.path.dirname(PERF), "build"))
    ap.add_argument("--suite", action="append", help="(from perf/bench.sh: secgw)")
    ap.add_argument("--out", default=None, help="results directory (default perf/results/DATE)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=2.0, help="seconds measured per point")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--sizes", default="64,1420")
    ap.add_argument("--no-imix", dest="imix", action="store_false")
    ap.add_argument("--dirs", default="out,in")
    ap.add_argument("--packets", type=int, default=512, help="packets in each looped capture")
    ap.add_argument("--core", type=int, default=None, help="CPU of both workers (default: last)")
    ap.add_argument("--pmd", default="crypto_aesni_gcm", help="ipsec-secgw's cryptodev vdev (crypto_aesni_gcm, crypto_aesni_mb)")
    ap.add_argument("--sa-type", default="no-offload", choices=("no-offload", "cpu-crypto"),
                    help="ipsec-secgw's SA type: lookaside cryptodev (default) or synchronous CPU crypto (-l path)")
    ap.add_argument("--hugepages", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="one short run at 64 B: checks the harness, not the numbers")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (captures, configurations, logs)")
    a = ap.parse_args()
    if not a.secgw or not (os.path.isfile(a.secgw) and os.access(a.secgw, os.X_OK)):
        print("secgw: skipped: no ipsec-secgw executable (%s); build it from DPDK's examples/ipsec-secgw and "
              "pass --secgw PATH (perf/README.md)" % (a.secgw or "--secgw not given"))
        return 0
    if a.smoke:
        a.runs, a.duration, a.warmup, a.sizes, a.imix = 1, 0.5, 0.5, "64", False
    a.secgw = os.path.abspath(a.secgw)
    a.sizes = [int(x) for x in a.sizes.split(",") if x]
    a.dirs = [x for x in a.dirs.split(",") if x]
    if a.core is None:
        a.core = (os.cpu_count() or 1) - 1
    if a.out is None:
        a.out = os.path.join(PERF, "results", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(a.out, exist_ok=True)
    c = Cmp(a)
    rc = 0
    result = None
    try:
        if os.path.exists(os.path.join(a.build, "build.ninja")):
            subprocess.run(["ninja", "-C", a.build, "p3d/p3d"], check=True, stdout=subprocess.DEVNULL)
        if not os.access(c.p3d, os.X_OK):
            raise RuntimeError("%s is not built (ninja -C %s p3d/p3d)" % (c.p3d, a.build))
        c.build_shim()
        result = c.run()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        print("secgw: %s" % e, file=sys.stderr)
        rc = 1
    finally:
        c.cleanup()
    if result is None:
        return rc
    js, t = write_results(a.out, result, {k: v for k, v in vars(a).items() if k != "out"})
    print()
    print(t)
    print("results: %s" % js)
    return rc


if __name__ == "__main__":
    sys.exit(main())
