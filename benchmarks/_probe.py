"""The startup/memory probe: run in a fresh interpreter by microbench.py.

It imports nothing but the backend under test and a few standard modules (no psutil, no
benchmark harness), so the driver it measures weighs what a user's driver weighs: the memory
of the measuring tool is not counted against either backend. PSS comes from
/proc/<pid>/smaps_rollup; the process tree from /proc/<pid>/stat.

Usage: python _probe.py BACKEND [IDLE_SECONDS]   (prints MARKER + JSON)
"""

import importlib
import json
import os
import sys
import time

MARKER = "MICROBENCH_PROBE_RESULT "


def _noop():
    return None


def _pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _all_procs():
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        out[int(name)] = (int(rest[1]), comm, cmd)  # ppid, name, command line
    return out


def _session_dir(backend):
    if backend.__name__ != "ray":
        return None
    try:  # private API; only used to find Ray processes that were re-parented
        return backend._private.worker._global_node.get_session_dir_path()
    except Exception:
        return None


def measure(backend):
    procs = _all_procs()
    me = os.getpid()
    tree = {me}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in procs.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    session = _session_dir(backend)
    extra = 0
    if session:
        for pid, (_, _, cmd) in procs.items():
            if pid not in tree and session in cmd:
                tree.add(pid)
                extra += 1
    total = 0
    names = []
    for pid in sorted(tree):
        kb = _pss_kb(pid)
        if kb is None:
            continue
        total += kb
        names.append(f"{procs.get(pid, (0, '?', ''))[1]} ({pid}): {kb / 1000:.1f} MB")
    return {"mb": total / 1000, "processes": len(names), "measure": "pss",
            "non_descendant_session_processes": extra, "process_mb": names}


def main():
    name = sys.argv[1]
    idle_s = float(sys.argv[2]) if len(sys.argv) > 2 else None
    out = {}
    backend = None
    try:
        t0 = time.perf_counter()
        backend = importlib.import_module(name)
        backend.init(num_cpus=2)
        backend.get(backend.remote(_noop).remote())
        out["startup_s"] = time.perf_counter() - t0
        if idle_s is not None:
            time.sleep(idle_s)
            out["memory"] = measure(backend)
    except BaseException as e:  # report, never crash silently
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        if backend is not None:
            try:
                backend.shutdown()
            except Exception:
                pass
    print(MARKER + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
