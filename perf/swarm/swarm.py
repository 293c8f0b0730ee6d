#!/usr/bin/python3
"""The swarm suite: one real p3d primary and p3-swarm playing N secondaries over a veth
(perf/swarm/README-swarm.md). Needs root (network namespaces).

  perf/swarm/swarm.py --build BUILD [--n 1000,5000] [--rekey 600,60] [--duration S] [--smoke]
                      [--trickle S] [--connect-rate R] [--json FILE] [--keep]

Per point (N x rekey_wait): two namespaces joined by one veth; p3d in the first (WAN =
net_af_packet on the veth, LAN = net_null, the configuration `p3-swarm config` writes: N
remotes, each its own address, /24 and key file); p3-swarm in the second on the other end.
Prints a table; --json writes {"suite": "swarm", "samples": [...], "passed"}.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

P3D_MAC = "02:50:33:00:00:01"    # p3d's WAN port (the veth end in its namespace)
TOOL_MAC = "02:50:33:00:00:fe"   # the tool's end: p3d's WAN gateway (gateway_mac), the "router"
# The kernel ring between the veth and p3d's net_af_packet port (the PMD's default is 512
# frames): what a NIC's RX descriptor ring is to p3d. Frames it cannot take are lost before
# p3d sees them; the sample reports them as veth.p3d_rx_missing.
AF_PACKET_FRAMES = 4096


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def count(path, pattern):
    try:
        with open(path, errors="replace") as f:
            return sum(1 for line in f if pattern in line)
    except OSError:
        return 0


def wait_log(path, pattern, proc, secs):
    end = time.time() + secs
    while time.time() < end:
        if count(path, pattern):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def link_stats(ns, dev):
    """The kernel's counters of one veth end (ip -s -j link)."""
    r = sh("ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev, check=False)
    try:
        st = json.loads(r.stdout)[0]["stats64"]
        return {"rx_packets": st["rx"]["packets"], "rx_dropped": st["rx"]["dropped"],
                "tx_packets": st["tx"]["packets"], "tx_dropped": st["tx"]["dropped"]}
    except (ValueError, KeyError, IndexError):
        return None


def softnet_dropped():
    """Frames the kernel's per-CPU input backlogs (netdev_max_backlog) dropped, all CPUs."""
    try:
        with open("/proc/net/softnet_stat") as f:
            return sum(int(line.split()[1], 16) for line in f if line.strip())
    except (OSError, IndexError, ValueError):
        return None


def one_point(a, n, rekey, duration, work):
    tag = "p3sw%d" % os.getpid()
    ns_p, ns_t = tag + "p", tag + "t"
    dev_p, dev_t = "swp%d" % os.getpid(), "swt%d" % os.getpid()
    prefix = "%s-%d-%d" % (tag, n, rekey)
    tool = os.path.join(a.build, "perf/swarm/p3-swarm")
    p3d = os.path.join(a.build, "p3d/p3d")
    conf = os.path.join(work, "p3d-%d-%d.conf" % (n, rekey))
    log = os.path.join(work, "p3d-%d-%d.log" % (n, rekey))
    out = os.path.join(work, "swarm-%d-%d.json" % (n, rekey))
    # heartbeat_time and heartbeat_fail stay p3d's defaults (15 s, 120 s) but in the smoke.
    hb = 2 if a.smoke else 15
    with open(conf, "w") as f:
        subprocess.run([tool, "config", "--n", str(n), "--psk-dir", os.path.join(work, "psk-%d" % n),
                        "--gateway-mac", TOOL_MAC, "--rekey-wait", str(rekey), "--heartbeat-time", str(hb),
                        "--heartbeat-fail", str(8 * hb)], check=True, stdout=f)
    p3d_proc = None
    sample = {"n": n, "rekey_wait_s": rekey, "ok": False}
    try:
        sh("ip", "netns", "add", ns_p)
        sh("ip", "netns", "add", ns_t)
        sh("ip", "link", "add", dev_p, "netns", ns_p, "address", P3D_MAC, "type", "veth",
           "peer", "name", dev_t, "netns", ns_t, "address", TOOL_MAC)
        for ns, dev in ((ns_p, dev_p), (ns_t, dev_t)):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso", "off", "gso", "off",
               "gro", "off", check=False)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
        cpu_ctl = "1" if (os.cpu_count() or 1) > 1 else "0"
        with open(log, "w") as lf:
            p3d_proc = subprocess.Popen(
                ["nsenter", "--net=/run/netns/" + ns_p, "--", p3d, "--no-huge", "-m", "512", "--no-pci",
                 "--file-prefix", prefix, "--lcores", "0@0", "--vdev", "net_af_packet0,iface=%s,framecnt=%d" % (dev_p, AF_PACKET_FRAMES),
                 "--vdev", "net_null1,no-rx=1", "--", "-c", conf, "-f"], stdout=lf, stderr=subprocess.STDOUT)
        if not wait_log(log, "P3-I0001", p3d_proc, 30):
            sample["error"] = "p3d did not start (log: %s)" % log
            return sample
        cmd = ["ip", "netns", "exec", ns_t, tool, "run", "--iface", dev_t, "--mac", TOOL_MAC, "--peer-mac", P3D_MAC,
               "--n", str(n), "--p3d-pid", str(p3d_proc.pid), "--p3d-prefix", prefix, "--rekey-wait", str(rekey),
               "--duration", str(duration), "--trickle", str(a.trickle), "--setup-timeout", str(a.setup_timeout),
               "--json", out]
        if a.connect_rate:
            cmd += ["--connect-rate", str(a.connect_rate)]
        # The tool on the control thread's CPU would measure the two fighting: it gets the other.
        cmd = ["taskset", "-c", "0"] + cmd
        backlog0 = softnet_dropped()
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=duration + a.setup_timeout + 120)
        backlog1 = softnet_dropped()
        if r.returncode not in (0, 1) or not os.path.exists(out):
            sample["error"] = "p3-swarm exited %d: %s" % (r.returncode, r.stderr.strip()[-400:])
            return sample
        with open(out) as f:
            sample = json.load(f)
        sample["primary_log"] = {
            "channels_up": count(log, "P3-I0501"), "rekeys_done": count(log, "P3-I0509"),
            "rekey_attempts_failed": count(log, "P3-W0510"),
            "sessions_lost": count(log, "P3-E0601") + count(log, "P3-E0602"),
            "requests_unanswered": count(log, "P3-W0505"), "array_deliveries_failed": count(log, "P3-W0521"),
            "rings_full_warnings": count(log, "P3-W0316"), "setup_policed_warnings": count(log, "P3-W0315"),
        }
        # Where a frame can be lost between the two programs: either veth end, the kernel's input
        # backlog (any CPU: the counter is global), the raw socket (the tool's "socket_drops").
        sample["veth"] = {"p3d_end": link_stats(ns_p, dev_p), "tool_end": link_stats(ns_t, dev_t),
                          "backlog_dropped": None if backlog0 is None else backlog1 - backlog0}
        wan = (sample.get("primary_ports_end") or {}).get("wan") or {}
        if sample["veth"]["p3d_end"] and "ipackets" in wan:
            sample["veth"]["p3d_rx_missing"] = sample["veth"]["p3d_end"]["rx_packets"] - wan["ipackets"]
        sample["ok"] = sample["ok"] and sample["primary_log"]["sessions_lost"] == 0
    finally:
        if p3d_proc and p3d_proc.poll() is None:
            p3d_proc.send_signal(signal.SIGTERM)
            try:
                p3d_proc.wait(20)
            except subprocess.TimeoutExpired:
                p3d_proc.kill()
                p3d_proc.wait()
        for ns in (ns_p, ns_t):
            sh("ip", "netns", "del", ns, check=False)
        for d in os.listdir("/var/run/dpdk") if os.path.isdir("/var/run/dpdk") else []:
            if d.startswith(prefix):
                shutil.rmtree(os.path.join("/var/run/dpdk", d), ignore_errors=True)
    return sample


def fmt(v, spec):
    return "-" if v is None or (isinstance(v, (int, float)) and v < 0) else format(v, spec)


def table(samples):
    lines = ["swarm: one p3d primary, N secondaries (p3-swarm) over a veth; steady window with heartbeats,",
             "rekeys and one data packet per secondary every trickle seconds",
             "%6s %6s | %7s %8s %6s %6s %6s | %8s %8s | %7s %7s | %9s %6s %6s | %8s %8s %5s | %4s"
             % ("N", "rekey", "wall s", "setups/s", "first", "t50", "t99", "rss B/s", "ctl cpu", "window",
                "ctl %", "rekeys", "min", "hb un", "pkts", "deliv", "lost", "ok")]
    for s in samples:
        if "setup" not in s:
            lines.append("%6d %6d | %s" % (s["n"], s["rekey_wait_s"], s.get("error", "failed")))
            continue
        st, pk, rk = s["setup"], s["packets"], s["rekeys"]
        lines.append("%6d %6.0f | %7s %8s %6s %6s %6s | %8s %8s | %7.1f %7s | %9d %6.0f %6.0f | %8d %8s %5s | %4s" % (
            s["n"], s["rekey_wait_s"], fmt(st["wall_s"], ".2f"), fmt(st["setups_per_s"], ".0f"),
            fmt(st["t_first_s"], ".2f"), fmt(st["t50_s"], ".2f"), fmt(st["t99_s"], ".2f"),
            fmt(s["rss_bytes_per_session_end"], ".0f"), fmt(st["primary_ctl_cpu_s"], ".2f"), s["duration_s"],
            fmt(100 * s["ctl_cpu_share_window"], ".1f"), rk["since_up"], rk["expected_min"], s["heartbeats"]["unanswered"],
            pk["sent"], fmt(pk["delivered_lan"], "d"),
            "-" if pk["delivered_lan"] is None else str(pk["sent"] - pk["delivered_lan"]), "yes" if s["ok"] else "NO"))
    lines.append("wall = last secondary up; rss B/s = p3d RSS growth per session (end of window); ctl cpu = p3d control "
                 "thread CPU s for the bring-up;\nctl % = its share of one CPU over the window; rekeys = completed since up, min = the fewest the\nprimary's timer allows (rekey_wait x 1.1 + 1 s apart); hb un = heartbeats "
                 "unanswered (in flight at the end count); lost = data packets sent - forwarded to p3d's LAN")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="p3 swarm suite")
    ap.add_argument("--build", default="build")
    ap.add_argument("--n", default="1000,5000")
    ap.add_argument("--rekey", default="600,60")
    ap.add_argument("--duration", type=float, default=None, help="steady window (default 1.15 x rekey_wait)")
    ap.add_argument("--trickle", type=float, default=5.0, help="seconds between two data packets of one secondary")
    ap.add_argument("--connect-rate", type=float, default=0, help="secondaries started per second (0: all at once)")
    ap.add_argument("--setup-timeout", type=float, default=300, help="seconds the bring-up may take")
    ap.add_argument("--smoke", action="store_true", help="20 secondaries, rekey_wait 5, a 7 s window")
    ap.add_argument("--json", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (configurations, p3d logs)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("swarm: skipped (needs root for network namespaces)")
        res = {"suite": "swarm", "skipped": "needs root", "samples": [], "passed": True}
        if a.json:
            json.dump(res, open(a.json, "w"), indent=1)
        return 0
    if a.smoke:
        a.n, a.rekey, a.duration = "20", "5", a.duration or 7.0
    work = tempfile.mkdtemp(prefix="p3swarm.")
    samples = []
    try:
        for n in [int(x) for x in a.n.split(",") if x]:
            for rekey in [int(x) for x in a.rekey.split(",") if x]:
                duration = a.duration if a.duration else round(1.15 * rekey + 2)
                print("swarm: N=%d rekey_wait=%d s, window %.0f s" % (n, rekey, duration), flush=True)
                samples.append(one_point(a, n, rekey, duration, work))
    finally:
        if a.keep:
            print("swarm: work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    passed = bool(samples) and all(s.get("ok") for s in samples)
    print(table(samples))
    res = {"suite": "swarm", "samples": samples, "passed": passed}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
