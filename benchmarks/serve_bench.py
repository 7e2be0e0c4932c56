#!/usr/bin/env python3
"""zactor.serve against Ray Serve 2.60, in the same run: a trivial deployment's overhead.

One deployment, one replica, each library's defaults (``serve.start`` only sets the HTTP
host and a free port), its ``__call__`` an ``async def`` returning ``{"ok": True}``. Each
backend runs in a fresh child process of its own interpreter on a local cluster of this
machine's CPUs (Ray only under ``--ray-python``, never imported here). Rows, each with
requests/s, p50 and p99 latency in ms, after a warm-up at the same concurrency:

- http_c1, http_c8, http_c32: ``GET /`` over HTTP/1.1 keep-alive on loopback from 1, 8 and
  32 concurrent clients (one connection each), for a fixed duration. The load generator is
  a separate process, the same for both backends: ``wrk --latency`` (one thread) when it is
  on PATH (``make bench-tools`` installs it), else this script's own asyncio client
  (``--client python``), run with this interpreter;
- handle_seq: ``handle.remote().result()`` in a loop from the driver, no HTTP;
- handle_c32: 32 coroutines in the driver, each awaiting ``handle.remote()`` in a loop.

The ratios are zactor / Ray: for requests/s higher is better, for latency lower is better.
The JSON (``--json FILE``, and always ``bench-results/serve-latest.json``) also has the
load generator's CPU time per row, and each backend's errors (a backend that fails to
import or start, or a row that fails, is reported there and in the table, not raised).

    python benchmarks/serve_bench.py --ray-python .venv-ray/bin/python
    python benchmarks/serve_bench.py --quick --json /tmp/serve.json      # zactor only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTTP_CONCURRENCY = (1, 8, 32)
HANDLE_CONCURRENCY = 32
ROWS = [f"http_c{c}" for c in HTTP_CONCURRENCY] + ["handle_seq", f"handle_c{HANDLE_CONCURRENCY}"]
METRICS = (("rps", "req/s", "rate"), ("p50_ms", "p50 ms", "cost"), ("p99_ms", "p99 ms", "cost"))


def _pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _summary(latencies_s: list[float], elapsed_s: float) -> dict:
    if not latencies_s:
        raise RuntimeError("no request completed")
    lat = sorted(latencies_s)
    return {"rps": len(lat) / elapsed_s, "p50_ms": _pct(lat, 0.50) * 1e3,
            "p99_ms": _pct(lat, 0.99) * 1e3, "requests": len(lat)}


# --- load generators (separate processes) ------------------------------------------------


async def _client_main(port: int, conns: int, warmup_s: float, duration_s: float) -> dict:
    """One keep-alive connection per client; each sends GET / and reads the whole response."""
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    phase = {"record": False}
    latencies: list[float] = []
    bad: list[int] = [0]

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        t0 = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        if status != 200:
            bad[0] += 1
        if phase["record"]:
            latencies.append(time.perf_counter() - t0)

    async def worker(stop_at: list[float]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at[0]:
                await one(reader, writer)
        finally:
            writer.close()

    stop_at = [time.perf_counter() + warmup_s + duration_s]
    tasks = [asyncio.create_task(worker(stop_at)) for _ in range(conns)]
    await asyncio.sleep(warmup_s)
    phase["record"], started = True, time.perf_counter()
    cpu0 = time.process_time()
    await asyncio.wait_for(asyncio.gather(*tasks), duration_s + 30)
    elapsed = time.perf_counter() - started
    out = _summary(latencies, elapsed)
    out.update(non_2xx=bad[0], generator_cpu_s=time.process_time() - cpu0, elapsed_s=elapsed)
    return out


def _run_bounded(cmd: list[str], timeout: float) -> tuple[int, str, float]:
    """Run ``cmd`` in a session of its own; return (status, stdout, its CPU seconds). It is
    killed (its whole group) when it runs past ``timeout`` or this process is interrupted."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{cmd[0]} ran past {timeout:.0f} s")
                time.sleep(0.05)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        out.seek(0)
        return proc.returncode, out.read(), usage.ru_utime + usage.ru_stime


def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def _http_row(cfg: dict, port: int, conns: int) -> dict:
    url = f"http://127.0.0.1:{port}/"
    bound = cfg["warmup_s"] + cfg["duration_s"] + 60
    if cfg["client"] == "wrk":
        wrk = ["wrk", "-t1", f"-c{conns}", "--timeout", "10s"]
        _run_bounded([*wrk, f"-d{max(1, round(cfg['warmup_s']))}s", url], bound)
        status, text, cpu = _run_bounded(
            [*wrk, "--latency", f"-d{max(1, round(cfg['duration_s']))}s", url], bound)
        if status != 0:
            raise RuntimeError(f"wrk exited {status}: {text[-500:]}")
        try:
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
            p50 = _wrk_ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
            p99 = _wrk_ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
            requests = int(re.search(r"(\d+) requests in", text).group(1))
        except AttributeError:
            raise RuntimeError(f"could not read wrk's output: {text[-500:]}") from None
        non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
        sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                         text)
        out = {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": requests,
               "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
               "socket_errors": sum(map(int, sock.groups())) if sock else 0,
               "generator_cpu_s": cpu, "elapsed_s": cfg["duration_s"]}
    else:
        status, text, _ = _run_bounded(
            [cfg["client_python"], os.path.abspath(__file__), "--load-client",
             json.dumps({"port": port, "conns": conns, "warmup_s": cfg["warmup_s"],
                         "duration_s": cfg["duration_s"]})], bound)
        if status != 0:
            raise RuntimeError(f"load client exited {status}: {text[-800:]}")
        out = json.loads(text.strip().splitlines()[-1])
    if out["non_2xx"] or out.get("socket_errors", 0) > 0.01 * out["requests"]:
        raise RuntimeError(f"{out['non_2xx']} non-2xx responses, "
                           f"{out.get('socket_errors', 0)} socket errors: {out}")
    out["generator_cpu_share"] = out["generator_cpu_s"] / out["elapsed_s"]
    return out


# --- the backend's child process ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(port: int, timeout: float) -> None:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                if resp.status == 200 and json.loads(resp.read()) == {"ok": True}:
                    return
                last = f"status {resp.status}"
        except Exception as e:  # noqa: BLE001 - not up yet
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.2)
    raise TimeoutError(f"HTTP proxy on port {port} not answering after {timeout:.0f} s: {last}")


def _handle_seq(handle, cfg: dict) -> dict:
    def loop(seconds: float) -> tuple[list[float], float]:
        lat, started = [], time.perf_counter()
        stop = started + seconds
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            assert handle.remote().result(timeout_s=30) == {"ok": True}
            lat.append(time.perf_counter() - t0)
        return lat, time.perf_counter() - started

    loop(cfg["warmup_s"])
    return _summary(*loop(cfg["duration_s"]))


def _handle_concurrent(handle, cfg: dict, n: int) -> dict:
    async def loop(seconds: float) -> tuple[list[float], float]:
        lat: list[float] = []
        started = time.perf_counter()
        stop = started + seconds

        async def one() -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                assert await handle.remote() == {"ok": True}
                lat.append(time.perf_counter() - t0)

        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), seconds + 60)
        return lat, time.perf_counter() - started

    async def main() -> dict:
        await loop(cfg["warmup_s"])
        return _summary(*await loop(cfg["duration_s"]))

    return asyncio.run(main())


def _sigterm(*_):
    raise SystemExit("terminated")


def child(backend: str, cfg: dict) -> dict:
    if backend == "ray":
        import ray
        from ray import serve
    else:
        import zactor as ray
        from zactor import serve

    @serve.deployment
    class Echo:
        async def __call__(self, request=None):
            return {"ok": True}

    rows, errors, info = {}, {}, {"client": cfg["client"]}
    port = _free_port()
    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        # after init, which may install a handler of its own: SIGTERM (the parent's timeout)
        # unwinds through the finally below, so serve and the cluster are shut down.
        signal.signal(signal.SIGTERM, _sigterm)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        handle = serve.run(Echo.bind(), name="echo", route_prefix="/")
        _wait_http(port, 60)
        info["startup_s"] = time.perf_counter() - started
        plan = [(f"http_c{c}", lambda c=c: _http_row(cfg, port, c)) for c in HTTP_CONCURRENCY]
        plan += [("handle_seq", lambda: _handle_seq(handle, cfg)),
                 (f"handle_c{HANDLE_CONCURRENCY}",
                  lambda: _handle_concurrent(handle, cfg, HANDLE_CONCURRENCY))]
        for name, fn in plan:
            try:
                rows[name] = fn()
            except Exception as e:  # noqa: BLE001 - a report, not a test
                errors[name] = (f"{type(e).__name__}: {e}".strip()[:300] + " | "
                                + traceback.format_exc().strip().splitlines()[-2][:200])
            print(f"[{backend}] {name}: {rows.get(name) or errors[name]}", file=sys.stderr,
                  flush=True)
    finally:
        for stop in (serve.shutdown, ray.shutdown):
            try:
                stop()
            except Exception as e:  # noqa: BLE001
                errors.setdefault("shutdown", f"{stop.__module__}.{stop.__name__}: {e!r}")
    return {"rows": rows, "errors": errors, "info": info}


# --- the parent --------------------------------------------------------------------------


def run(python: str, backend: str, cfg: dict, timeout: float) -> dict:
    """The backend in a child of its own interpreter and session; on timeout it gets SIGTERM
    (so it can shut serve and its cluster down), then its whole group SIGKILL."""
    fd, result_file = tempfile.mkstemp(prefix=f"serve-bench-{backend}-", suffix=".json")
    os.close(fd)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_BACKEND": backend}
    try:
        proc = subprocess.Popen([python, os.path.abspath(__file__), "--child", backend,
                                 "--child-config", json.dumps({**cfg, "out": result_file})],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    except OSError as e:
        os.unlink(result_file)
        return {"rows": {}, "errors": {"run": f"{type(e).__name__}: {e}"}, "info": {}}
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            output = ""
        output += f"\n{backend} ran past {timeout:.0f} s"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            proc.wait(10)
    sys.stderr.write(output)
    try:
        text = Path(result_file).read_text()
        os.unlink(result_file)
        if text:
            return json.loads(text)
    except (OSError, ValueError):
        pass
    return {"rows": {}, "errors": {"run": " | ".join(output.strip().splitlines()[-3:])
                                   or f"exit status {proc.returncode}"}, "info": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-python", default=None)
    parser.add_argument("--quick", action="store_true", help="short rows, for smoke tests")
    parser.add_argument("--duration", type=float, default=None, help="seconds per row")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-config", help=argparse.SUPPRESS)
    parser.add_argument("--load-client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_client:
        c = json.loads(args.load_client)
        print(json.dumps(asyncio.run(_client_main(c["port"], c["conns"], c["warmup_s"],
                                                  c["duration_s"]))))
        return
    if args.child:
        cfg = json.loads(args.child_config)
        try:
            out = child(args.child, cfg)
        except BaseException as e:
            out = {"rows": {}, "info": {},
                   "errors": {"run": f"{type(e).__name__}: {e}".strip()[:500] + " | "
                              + " / ".join(traceback.format_exc().strip().splitlines()[-3:])}}
        Path(cfg["out"]).write_text(json.dumps(out))
        return
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    duration = args.duration or (1.0 if args.quick else 8.0)
    cfg = {"client": client, "client_python": sys.executable, "duration_s": duration,
           "warmup_s": 0.5 if args.quick else 2.0}
    timeout = 120 + 8 * (duration + cfg["warmup_s"])
    backends = [("zactor", sys.executable)] + ([("ray", args.ray_python)] if args.ray_python
                                               else [])
    runs = {name: run(python, name, cfg, timeout) for name, python in backends}
    results = {name: {f"{row}_{m}": v[m] for row, v in r["rows"].items() for m, _, _ in METRICS}
               for name, r in runs.items()}
    errors = {name: r["errors"] for name, r in runs.items() if r["errors"]}
    print(f"\nzactor.serve vs Ray Serve, {os.cpu_count()} cores, load generator {client}, "
          f"{duration:g} s per row{', quick' if args.quick else ''}, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| row | zactor | Ray Serve | zactor / Ray |")
    print("|---|---|---|---|")
    for row in ROWS:
        for key, label, _ in METRICS:
            z, r = (results.get(b, {}).get(f"{row}_{key}") for b in ("zactor", "ray"))
            ratio = f"{z / r:.2f}x" if z and r else "-"
            cells = [f"{v:,.1f}" if v is not None else "-" for v in (z, r)]
            print(f"| {row} {label} | {cells[0]} | {cells[1]} | {ratio} |")
    print("\nreq/s: higher is better; ms: lower is better. "
          "HTTP load generator CPU share (of one core):",
          ", ".join(f"{b} {row} {r['rows'][row]['generator_cpu_share']:.0%}"
                    for b, r in runs.items() for row in r["rows"] if row.startswith("http")))
    for backend, errs in errors.items():
        for row, msg in errs.items():
            print(f"{backend} {row} failed: {msg}")
    data = {"results": results, "errors": errors, "runs": runs, "config": cfg,
            "cpu_count": os.cpu_count(), "quick": args.quick}
    text = json.dumps(data, indent=1)
    (ROOT / "bench-results").mkdir(exist_ok=True)
    (ROOT / "bench-results" / "serve-latest.json").write_text(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
