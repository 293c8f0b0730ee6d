"""The throughput suite's table (table.txt) and scaling figures, for perf/bench.py."""

SCALING_TARGET = 0.9  # Mpps(W) / (W x Mpps(1)) per added worker


def scaling(rows):
    """Mpps(W) / (W x Mpps(1)) for every row with W > 1 whose one-worker twin was measured."""
    one = {(r["io"], r["dir"], r["key"], r["size"], r["sessions"]): r for r in rows
           if r["workers"] == 1 and "mpps" in r}
    for r in rows:
        base = one.get((r["io"], r["dir"], r["key"], r["size"], r["sessions"]))
        if r["workers"] > 1 and base and "mpps" in r and base["mpps"]["median"] > 0:
            r["scaling"] = r["mpps"]["median"] / (r["workers"] * base["mpps"]["median"])
            r["scaling_target"] = SCALING_TARGET
            r["meets_scaling"] = r["scaling"] >= SCALING_TARGET


def fmt_one(m):
    if not m["packets"]:
        return "no packets (%s)" % m.get("note", "")
    return "%.3f Mpps %.2f Gbps %.0f cyc/pkt | raw %.3f Mpps | %.0f%%" % (
        m["mpps"], m["gbps"], m["cycles"], m["raw_mpps"], 100 * m["ratio"])


def table(result):
    lines = []
    env = result.get("env", {})
    lines.append("p3d, static keys, W worker lcores, S sessions | raw bound: ipsec-mb %s (%s) on one core, TSC %.2f GHz" % (
        env.get("ipsec_mb", "?"), env.get("arch", "?"), env.get("tsc_hz", 0) / 1e9))
    lines.append("median [min..max] over runs; cyc/pkt = worker cycles per packet (all W workers); ratio = p3d Mpps / "
                 "(W x raw AES-GCM Mpps), same size, key, direction; scaling = Mpps(W) / (W x Mpps(1)), target %d%%"
                 % round(100 * SCALING_TARGET))
    hdr = "%-4s %-4s %-7s %5s %2s %5s | %-22s %-7s %-9s | %-8s %-9s | %-18s %-9s | %s" % (
        "io", "dir", "key", "frame", "W", "S", "Mpps", "Gbps", "cyc/pkt", "raw Mpps", "raw cyc", "ratio", "target",
        "scaling")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for r in result["rows"]:
        head = "%-4s %-4s AES-%-3d %5s %2d %5d" % (r["io"], r["dir"], r["key"], r["size"], r["workers"], r["sessions"])
        if "mpps" not in r:
            lines.append("%s | (no measurement) %s" % (head, "; ".join(r["notes"])))
            continue
        mp, rt = r["mpps"], r.get("ratio")
        tgt = ""
        if "target" in r:
            tgt = "%s %d%%" % ("ok  " if r["meets_target"] else "MISS", round(100 * r["target"]))
        sc = ""
        if "scaling" in r:
            sc = "%.2f %s" % (r["scaling"], "ok" if r["meets_scaling"] else "MISS")
        lines.append("%s | %6.3f [%6.3f..%6.3f] %7.2f %9.0f | %8.3f %9.0f | %3.0f%% [%3.0f..%3.0f%%] %-9s | %s" % (
            head, mp["median"], mp["min"], mp["max"], r["gbps"]["median"],
            r["cycles"]["median"] if "cycles" in r else float("nan"), r["raw_mpps"]["median"],
            r["raw_cycles"]["median"], 100 * rt["median"], 100 * rt["min"], 100 * rt["max"], tgt, sc))
    return "\n".join(lines)


def scaling_chart(result, out_dir, gp):
    """DIR/scaling.png: Mpps(W) / (W x Mpps(1)) against frame size, one line per I/O, direction,
    W and S (first key), the target drawn. None when no row has a scaling figure."""
    import os
    import subprocess
    rows = [r for r in result["rows"] if "scaling" in r and r["size"] != "imix"]
    if not rows:
        return None
    key = min(r["key"] for r in rows)
    rows = [r for r in rows if r["key"] == key]
    dat = os.path.join(out_dir, "scaling.dat")
    series = sorted({(r["io"], r["dir"], r["workers"], r["sessions"]) for r in rows})
    with open(dat, "w") as f:
        for c in series:
            f.write("# %s %s W%d S%d: frame scaling\n" % c)
            for r in sorted((r for r in rows if (r["io"], r["dir"], r["workers"], r["sessions"]) == c),
                            key=lambda r: int(r["size"])):
                f.write("%s %.4f\n" % (r["size"], r["scaling"]))
            f.write("\n\n")
    png = os.path.join(out_dir, "scaling.png")
    plots = ["%.2f with lines dt 2 lc rgb 'black' title 'target'" % SCALING_TARGET]
    for i, (io, d, w, n) in enumerate(series):
        plots.append("'%s' index %d using 1:2 with linespoints lw 2 pt 7 title '%s %s, %d workers, %d session%s'" % (
            dat, i, d, io, w, n, "s" if n > 1 else ""))
    script = """set terminal png size 900,500
set output '%s'
set title 'p3d scaling per added worker: Mpps(W) / (W x Mpps(1)), AES-%d'
set xlabel 'Ethernet frame size (bytes, FCS included)'
set logscale x 2
set xtics (64,128,256,512,1024,1420)
set yrange [0:1.3]
set grid
set key bottom right
plot %s
""" % (png, key, ", \\\n     ".join(plots))
    sp = os.path.join(out_dir, "scaling.gp")
    with open(sp, "w") as f:
        f.write(script)
    r = subprocess.run([gp, sp], capture_output=True, text=True)
    return png if r.returncode == 0 else None
