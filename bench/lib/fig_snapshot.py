"""Figure 6: snapshot restore latency.

Lights up once vmon documents checkpointing: a `snapshot`/`restore` command in `vmon --help`
or a --snapshot/--restore option in `vmon run --help`. It is then expected to work as
  vmon run ... --snapshot-on-signal PATH   (or a `vmon snapshot` command) and
  vmon restore PATH / vmon run --restore PATH;
until the interface exists this only reports that the feature is missing, because guessing
the command line of a feature that is not written yet would measure nothing.
"""
import re
import subprocess

from common import not_available


def supported(ctx):
    try:
        top = subprocess.run([ctx.vmon.binary, "--help"], capture_output=True, text=True, timeout=10)
        text = top.stdout + top.stderr + ctx.vmon.help_text()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(re.search(r"^\s+(snapshot|restore)\s|--(snapshot|restore)\b", text, re.M))


def run(ctx):
    if not supported(ctx):
        return {"available": False, "reason": "vmon has no snapshot/restore yet"}
    return {"available": False,
            "reason": "vmon documents snapshots, but this benchmark does not drive them yet: "
                      "add the restore timing in bench/lib/fig_snapshot.py",
            "cell": not_available("snapshot support found; timing not written yet").to_json()}
