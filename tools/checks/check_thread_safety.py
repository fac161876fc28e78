#!/usr/bin/env python3
"""Checks the ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations with clang.

GCC ignores Abseil's thread-safety attributes; clang's -Wthread-safety analysis
(a front-end analysis, so -fsyntax-only is enough and no second build is made)
checks them. Every C++ source of the project in the build's
compile_commands.json is analysed with the same include paths and defines as
the GCC build; any thread-safety warning fails the check.

Before the sources, a canary with a known violation is analysed with the same
flags: if clang does not flag it, the check itself is broken and fails rather
than passing vacuously.

Usage: check_thread_safety.py BUILD_DIR [--jobs N] [FILE_SUBSTRING ...]
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

CLANG = os.environ.get("HC_CLANGXX", "clang++-14")
FLAGS = ["-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety", "-Wno-unknown-warning-option"]
CANARY = """#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
struct Canary {
  absl::Mutex mu;
  int value ABSL_GUARDED_BY(mu) = 0;
  void Unlocked() { value = 1; }  // must be flagged
};
"""


def clang_command(entry, source):
    """The GCC command of `entry` turned into a clang syntax-only analysis of `source`."""
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    out, skip = [], False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a == "-o":
            skip = True
            continue
        if a == "-c" or a == entry["file"]:
            continue
        out.append(a)
    return [CLANG] + FLAGS + out + [source]


def ours(path, root, build_dir):
    return (path.startswith(root + os.sep) and not path.startswith(build_dir + os.sep)
            and path.endswith(".cc") and not path.endswith(".pb.cc"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("build_dir")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    p.add_argument("only", nargs="*")
    a = p.parse_args()
    build_dir = os.path.realpath(a.build_dir)
    root = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
    with open(os.path.join(build_dir, "compile_commands.json")) as f:
        entries = [e for e in json.load(f) if ours(os.path.realpath(e["file"]), root, build_dir)]
    if a.only:
        entries = [e for e in entries if any(s in e["file"] for s in a.only)]
    if not entries:
        print("check_thread_safety: no sources found in", build_dir, file=sys.stderr)
        return 1

    with tempfile.NamedTemporaryFile("w", suffix=".cc") as canary:
        canary.write(CANARY)
        canary.flush()
        r = subprocess.run(clang_command(entries[0], canary.name), cwd=entries[0]["directory"],
                           capture_output=True, text=True)
        if r.returncode == 0 or "thread-safety" not in r.stderr:
            print("check_thread_safety: clang did not flag the canary; the check is broken:\n" +
                  r.stderr, file=sys.stderr)
            return 1

    def analyse(e):
        r = subprocess.run(clang_command(e, e["file"]), cwd=e["directory"],
                           capture_output=True, text=True)
        return e["file"], r.returncode, r.stderr

    failed = 0
    with ThreadPoolExecutor(a.jobs) as pool:
        for path, rc, err in pool.map(analyse, entries):
            if rc != 0:
                failed += 1
                print(f"--- {os.path.relpath(path, root)}\n{err}", end="")
    print(f"check_thread_safety: {len(entries)} sources, {failed} with errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
