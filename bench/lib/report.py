"""The printed table, bench/results/latest.json and the PNG chart."""
import json
import os
import shutil
import subprocess

from common import Cell

COLS = [("vmon", "vmon"), ("qemu-microvm", "QEMU microvm"), ("qemu-pc", "QEMU pc")]


def fmt(v):
    if isinstance(v, Cell):
        return v.kind
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    a = abs(v)
    return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1 else f"{v:.3f}"


class Table:
    def __init__(self):
        self.rows = []
        self.notes = []  # (text)

    def section(self, title):
        self.rows.append({"section": title})

    def row(self, label, values, other=None, other_label=""):
        self.rows.append({"label": label, "values": values, "other": other, "other_label": other_label})

    def note(self, who, cell):
        text = f"{who}: {cell.kind}: {cell.reason}"
        if text not in self.notes:
            self.notes.append(text)
        return self.notes.index(text) + 1

    def cell(self, who, v):
        if isinstance(v, Cell):
            return f"{v.kind} [{self.note(who, v)}]"
        return fmt(v)

    def render(self):
        head = ["measure"] + [c[1] for c in COLS] + ["vmon/microvm", "vmon/pc", "other"]
        lines = []
        body = []
        for r in self.rows:
            if "section" in r:
                body.append([r["section"]])
                continue
            vals = r["values"]
            cells = [self.cell(name, vals.get(name)) for name, _ in COLS]
            v0 = vals.get("vmon")
            for name in ("qemu-microvm", "qemu-pc"):
                q = vals.get(name)
                ok = all(isinstance(x, (int, float)) for x in (v0, q)) and q
                cells.append(f"{v0 / q:.2f}x" if ok else "-")
            other = ""
            if r["other"] is not None:
                other = f"{r['other_label']} {self.cell(r['other_label'], r['other'])}".strip()
            body.append(["  " + r["label"]] + cells + [other])
        widths = [max(len(x[i]) for x in [head] + [b for b in body if len(b) > 1]) for i in range(len(head))]
        lines.append("  ".join(h.ljust(widths[i]) for i, h in enumerate(head)).rstrip())
        lines.append("-" * len(lines[0]))
        for b in body:
            if len(b) == 1:
                lines.append(b[0])
            else:
                lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                                       for i, c in enumerate(b)).rstrip())
        if self.notes:
            lines.append("")
            lines.extend(f"[{i + 1}] {n}" for i, n in enumerate(self.notes))
        return "\n".join(lines)


def to_json(obj):
    def default(o):
        if isinstance(o, Cell):
            return o.to_json()
        if isinstance(o, tuple):
            return list(o)
        return str(o)

    def keys(o):
        if isinstance(o, dict):
            return {("/".join(map(str, k)) if isinstance(k, tuple) else k): keys(v) for k, v in o.items()}
        if isinstance(o, list):
            return [keys(v) for v in o]
        return o
    return json.dumps(keys(obj), indent=1, default=default, sort_keys=False)


def num(v):
    return v if isinstance(v, (int, float)) else None


def chart(path, boot_summary, boot_labels, exit_summary, exit_labels, milestones, milestone_labels, title):
    """Two panels: boot milestones per VMM (log seconds) and exit cost per kind (microseconds).
    Returns None on success, else why there is no chart."""
    if not shutil.which("gnuplot"):
        return "gnuplot is not installed"

    def block(name, rows, cols, scale=1.0):
        out = [f"${name} << EOD"]
        for key, label in rows:
            vals = []
            for c in cols:
                v = num(c.get(key))
                vals.append(f"{v * scale:.6g}" if v is not None and v > 0 else "NaN")
            out.append(f"\"{label}\" " + " ".join(vals))
        out.append("EOD")
        return out

    boot_cols = [boot_summary[n] for n in boot_labels]
    exit_cols = [exit_summary[n] for n in exit_labels]
    script = []
    script += block("boot", list(zip(milestones, milestone_labels)), boot_cols)
    script += block("exits", list(exit_labels_rows()), exit_cols, scale=1e-3)
    panels = []
    if boot_labels:
        panels.append([
            "set title 'Boot timeline of the default guest (median s from process start, log scale; no bar: did not get there)'",
            "set logscale y", "set ylabel 'seconds'", "set yrange [*:*]",
            "plot " + ", ".join(f"$boot using {i + 2}:xtic(1) title '{lab}'"
                                for i, lab in enumerate(boot_labels.values())),
            "unset logscale y"])
    if exit_labels:
        panels.append([
            "set title 'Exit cost: one guest exit round trip (median, microseconds)'",
            "set ylabel 'microseconds'", "set yrange [0:*]",
            "plot " + ", ".join(f"$exits using {i + 2}:xtic(1) title '{lab}'"
                                for i, lab in enumerate(exit_labels.values()))])
    if not panels:
        return "nothing to plot"
    script += [
        ("set terminal pngcairo noenhanced size 1400,600 font ',10'" if has_cairo()
         else "set terminal png noenhanced size 1400,600"),
        f"set output '{path}'",
        f"set multiplot layout 1,{len(panels)} title '" + title.replace("'", "") + "'",
        "set style data histograms", "set style histogram clustered gap 1",
        "set style fill solid 0.8 border -1", "set key top left", "set grid ytics",
        "set xtics rotate by -20 nomirror",
    ]
    for p in panels:
        script += p
    script.append("unset multiplot")
    p = subprocess.run(["gnuplot"], input="\n".join(script) + "\n", capture_output=True, text=True)
    if p.returncode != 0 or not os.path.exists(path):
        return "gnuplot failed: " + p.stderr.strip()[:200]
    return None


def exit_labels_rows():
    from fig_exits import KINDS, KIND_LABEL
    return [(k, KIND_LABEL[k]) for k in KINDS]


def has_cairo():
    try:
        p = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True, timeout=10)
        return "pngcairo" in p.stdout + p.stderr
    except (OSError, subprocess.TimeoutExpired):
        return False
