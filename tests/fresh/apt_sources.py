#!/usr/bin/env python3
"""Prints, in deb822 form, the host's apt sources that serve a Debian release (CODENAME,
CODENAME-updates, CODENAME-security), so a fresh root gets its packages from the same
mirrors as this machine and from nowhere else. With --mirror, prints only the URI that
serves CODENAME itself, for debootstrap.

  apt_sources.py CODENAME [--mirror]
"""
import glob
import sys


def deb822_entries(path):
    entry = {}
    key = None
    for line in open(path, encoding="utf-8"):
        if line.startswith("#"):
            continue
        if not line.strip():
            if entry:
                yield entry
            entry, key = {}, None
            continue
        if line[0] in " \t" and key:
            entry[key] += " " + line.strip()
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        entry[key] = value.strip()
    if entry:
        yield entry


def one_line_entries(path):
    for line in open(path, encoding="utf-8"):
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        options = {}
        if words[1].startswith("["):
            while not words[1].endswith("]"):
                words[1:3] = [words[1] + " " + words[2]]
            for opt in words[1].strip("[]").split():
                k, _, v = opt.partition("=")
                options[k] = v
            words.pop(1)
        entry = {"Types": "deb", "URIs": words[1], "Suites": words[2],
                 "Components": " ".join(words[3:])}
        if "signed-by" in options:
            entry["Signed-By"] = options["signed-by"]
        yield entry


def host_entries():
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        yield from deb822_entries(path)
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        try:
            yield from one_line_entries(path)
        except FileNotFoundError:
            pass


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    codename = sys.argv[1]
    wanted = {codename, codename + "-updates", codename + "-security"}
    found = []
    for e in host_entries():
        if "deb" not in e.get("Types", "").split() or e.get("Enabled", "yes") == "no":
            continue
        suites = [s for s in e.get("Suites", "").split() if s in wanted]
        if suites:
            found.append(dict(e, Types="deb", Suites=" ".join(suites)))
    if "--mirror" in sys.argv:
        for e in found:
            if codename in e["Suites"].split():
                print(e["URIs"].split()[0])
                return
        sys.exit(f"apt_sources: no apt source on this host serves {codename}")
    for e in found:
        for k in ("Types", "URIs", "Suites", "Components", "Signed-By"):
            if k in e:
                print(f"{k}: {e[k]}")
        print()


main()
