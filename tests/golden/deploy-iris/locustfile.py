"""Load test of an nb2prod service with Locust, held to the release's [slo].

Copied as it is into every release as ``deploy/locustfile.py``, beside ``deploy/loadtest.json``
(the release's name, version, [slo] and the inputs to send: its examples and inputs generated from
its contract). Needs only ``pip install locust``; nothing from nb2prod. Two ways to run it:

    locust -f deploy/locustfile.py --host https://HOST            # Locust's web UI or --headless
    python deploy/locustfile.py --host https://HOST --users 10 --rate 20 --duration 60

Either way every request is a ``POST /v1/predict`` of one input, with ``Authorization: Bearer
$NB2PROD_API_TOKEN`` when that is set, at ``--rate`` requests/s in total (default: the [slo]'s
``expected_rps``). Fallback answers are named ``/v1/predict [fallback: REASON]`` in Locust's
statistics, so their share shows next to the model's answers. At the end it prints p50/p95/p99,
requests/s and the error, fallback and rejected shares against the [slo], and exits 1 when an
objective is broken. ``nb2prod loadtest`` runs this same file the second way (``--json`` writes
the summary for its report).
"""

# Locust monkey-patches the standard library (gevent) when it is imported; nothing above it
# may import ssl or socket (the standard-library modules here do not).
import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, events, task
from locust.env import Environment
from locust.user.wait_time import constant_pacing

ROUTE = "/v1/predict"
SETTINGS_ENV = "NB2PROD_LOADTEST_SETTINGS"  # another loadtest.json than the one beside this file
SAMPLES: list[tuple[float, float, str]] = []  # (seconds since start, latency ms, outcome)
STARTED = [time.monotonic()]


def settings() -> dict[str, Any]:
    path = Path(os.environ.get(SETTINGS_ENV) or Path(__file__).with_name("loadtest.json"))
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


SETTINGS = settings()
INPUTS: list[dict[str, Any]] = SETTINGS["examples"] + SETTINGS["generated"]


@events.init_command_line_parser.add_listener
def _options(parser: Any, **_: Any) -> None:
    parser.add_argument(
        "--rate", type=float, default=SETTINGS["slo"]["expected_rps"],
        help="requests/s in total, spread over the users (default: the [slo]'s expected_rps)",
    )  # fmt: skip


class PredictUser(FastHttpUser):
    """One caller: sends one input at a time, an example or a contract-generated one."""

    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        self.pick = random.Random(id(self)).choice
        token = os.environ.get("NB2PROD_API_TOKEN")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def wait_time(self) -> float:
        """Pace each user so that all of them together send ``--rate`` requests/s."""
        rate = (
            getattr(self.environment.parsed_options, "rate", None)
            or SETTINGS["slo"]["expected_rps"]
        )
        runner = self.environment.runner
        users = max(runner.target_user_count if runner is not None else 1, 1)
        pacing: float = constant_pacing(users / rate)(self)
        return pacing

    @task
    def predict(self) -> None:
        with self.client.post(
            ROUTE, json=self.pick(INPUTS), headers=self.headers, catch_response=True
        ) as response:
            outcome = classify(response.status_code, response.text)
            if outcome.startswith("fallback:"):
                response.request_meta["name"] = f"{ROUTE} [{outcome.replace(':', ': ')}]"
            if outcome in ("error", "rejected"):
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            else:
                response.success()
            response.request_meta["context"] = {"outcome": outcome}


def classify(status: int, body: str | None) -> str:
    """ok, fallback:REASON, rejected (4xx: the input was refused) or error (5xx, no answer)."""
    if not status or status >= 500:
        return "error"
    if status >= 400:
        return "rejected"
    try:
        answer = json.loads(body or "")
    except ValueError:
        return "error"
    if isinstance(answer, dict) and answer.get("degraded"):
        return f"fallback:{answer.get('reason')}"
    return "ok"


@events.test_start.add_listener
def _started(**_: Any) -> None:
    SAMPLES.clear()
    STARTED[0] = time.monotonic()


@events.request.add_listener
def _record(response_time: float, context: dict[str, Any], exception: Any, **_: Any) -> None:
    outcome = (context or {}).get("outcome") or ("error" if exception else "ok")
    SAMPLES.append((time.monotonic() - STARTED[0], float(response_time), outcome))


@events.quitting.add_listener
def _verdict(environment: Environment, **_: Any) -> None:
    """Under the ``locust`` command: print the verdict and exit 1 when an objective is broken."""
    if environment.parsed_options is None or getattr(environment.parsed_options, "_nb2prod", False):
        return
    seconds = max((s[0] for s in SAMPLES), default=0.0)
    report = summarise(SAMPLES, seconds, environment.parsed_options.rate)
    print(render(report))
    if not report["ok"]:
        environment.process_exit_code = 1


# ---------------------------------------------------------------- the summary


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (0 when there are none)."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, math.ceil(share * len(values)) - 1))]


def summarise(
    samples: list[tuple[float, float, str]], seconds: float, rate: float
) -> dict[str, Any]:
    """Latency percentiles, requests/s, shares and a per-second timeline, checked against [slo]."""
    slo = SETTINGS["slo"]
    latencies = sorted(s[1] for s in samples)
    total = len(samples)
    counts: dict[str, int] = {}
    for _, _, outcome in samples:
        counts[outcome] = counts.get(outcome, 0) + 1
    fallbacks = {
        o.split(":", 1)[1]: n for o, n in sorted(counts.items()) if o.startswith("fallback:")
    }

    def share(count: int) -> float:
        return count / total if total else 0.0

    errors = share(counts.get("error", 0))
    answered = counts.get("ok", 0) + sum(fallbacks.values())
    measured = {
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
        "error_rate": errors,
        "availability": 1 - errors if total else 0.0,
        "fallback_rate": sum(fallbacks.values()) / answered if answered else 0.0,
        "requests_per_s": throughput([s[0] for s in samples])
        or (total / seconds if seconds else 0.0),
    }
    checks = [
        _check("p95_ms", "p95 latency (ms)", slo["p95_ms"], measured["p95_ms"], "<="),
        _check("p99_ms", "p99 latency (ms)", slo["p99_ms"], measured["p99_ms"], "<="),
        _check("error_rate", "error share", slo["error_rate"], errors, "<="),
        _check("availability", "availability", slo["availability"], measured["availability"], ">="),
        _check("fallback_rate", "fallback share", slo["fallback_rate"], measured["fallback_rate"], "<="),
        # the service must keep up with the load asked for (10% slack for pacing jitter)
        _check("requests_per_s", "requests/s", round(0.9 * rate, 3), measured["requests_per_s"], ">="),
    ]  # fmt: skip
    if total == 0:
        checks.append({"key": "requests", "what": "requests answered", "target": 1,
                       "measured": 0, "op": ">=", "ok": False})  # fmt: skip
    return {
        "name": SETTINGS["name"],
        "version": SETTINGS["version"],
        "slo": slo,
        "rate": rate,
        "seconds": round(seconds, 3),
        "requests": total,
        "outcomes": dict(sorted(counts.items())),
        "latency_ms": {
            "p50": percentile(latencies, 0.5),
            "p95": measured["p95_ms"],
            "p99": measured["p99_ms"],
            "max": latencies[-1] if latencies else 0.0,
            "mean": sum(latencies) / total if total else 0.0,
        },
        "requests_per_s": measured["requests_per_s"],
        "shares": {
            "error": errors,
            "fallback": measured["fallback_rate"],
            "rejected": share(counts.get("rejected", 0)),
        },
        "fallback_reasons": fallbacks,
        "inputs": {"examples": len(SETTINGS["examples"]), "generated": len(SETTINGS["generated"])},
        "checks": checks,
        "ok": all(c["ok"] for c in checks),
        "timeline": timeline(samples),
    }


def throughput(times: list[float]) -> float:
    """Requests/s between the first and the last answer (ramp-up and the cut at the end aside)."""
    if len(times) < 2 or max(times) <= min(times):
        return 0.0
    return (len(times) - 1) / (max(times) - min(times))


def _check(key: str, what: str, target: float, measured: float, op: str) -> dict[str, Any]:
    ok = measured <= target if op == "<=" else measured >= target
    return {"key": key, "what": what, "target": target, "measured": measured, "op": op, "ok": ok}


def timeline(samples: list[tuple[float, float, str]]) -> list[dict[str, Any]]:
    """Per second of the run: requests, p50/p95/p99 and errors/fallbacks (for the picture)."""
    seconds: dict[int, list[tuple[float, str]]] = {}
    for at, ms, outcome in samples:
        seconds.setdefault(int(at), []).append((ms, outcome))
    points = []
    for second in sorted(seconds):
        values = sorted(ms for ms, _ in seconds[second])
        outcomes = [o for _, o in seconds[second]]
        points.append({
            "t": second,
            "requests": len(values),
            "p50": percentile(values, 0.5),
            "p95": percentile(values, 0.95),
            "p99": percentile(values, 0.99),
            "errors": outcomes.count("error"),
            "fallbacks": sum(o.startswith("fallback:") for o in outcomes),
        })  # fmt: skip
    return points


def render(report: dict[str, Any]) -> str:
    lat, shares = report["latency_ms"], report["shares"]
    lines = [
        f"{report['name']} {report['version']}: {report['requests']} requests in "
        f"{report['seconds']:.1f} s ({report['requests_per_s']:.1f}/s, asked {report['rate']:g}/s)",
        f"  latency ms  p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
        f"max {lat['max']:.1f}",
        f"  shares      errors {shares['error']:.2%}  fallbacks {shares['fallback']:.2%}  "
        f"rejected {shares['rejected']:.2%}",
    ]
    if report["fallback_reasons"]:
        reasons = ", ".join(f"{k} {v}" for k, v in report["fallback_reasons"].items())
        lines.append(f"  fallbacks   {reasons}")
    lines.append("  objective                       target     measured")
    for c in report["checks"]:
        lines.append(
            f"  {'ok  ' if c['ok'] else 'FAIL'} {c['what']:<26} {c['op']} {_fmt(c['target']):<8} "
            f"{_fmt(c['measured'])}"
        )
    lines.append("SLO met" if report["ok"] else "SLO BROKEN")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- python locustfile.py ...


def main(argv: list[str] | None = None) -> int:
    """Run the load with Locust as a library: live progress, summary, exit 1 on a broken SLO."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True, help="the service's base URL")
    parser.add_argument("--users", type=int, default=10, help="concurrent users (default 10)")
    parser.add_argument(
        "--rate",
        type=float,
        default=SETTINGS["slo"]["expected_rps"],
        help="requests/s in total (default: the [slo]'s expected_rps)",
    )
    parser.add_argument("--duration", type=float, default=30, help="seconds (default 30)")
    parser.add_argument("--json", dest="json_out", help="write the summary here as JSON")
    args = parser.parse_args(argv)  # fmt: skip
    options = argparse.Namespace(rate=args.rate, _nb2prod=True)
    environment = Environment(
        user_classes=[PredictUser], host=args.host, events=events, parsed_options=options
    )
    runner = environment.create_local_runner()
    runner.start(args.users, spawn_rate=min(max(args.users, 1), 100))  # fires test_start
    progress = gevent.spawn(_progress, args.rate)
    gevent.spawn_later(args.duration, runner.quit)
    runner.greenlet.join()
    progress.kill()
    report = summarise(list(SAMPLES), args.duration, args.rate)
    report.update(url=args.host, users=args.users)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(render(report), flush=True)
    return 0 if report["ok"] else 1


def _progress(rate: float) -> None:
    """One line a second: elapsed, requests, requests/s, p95 so far, error and fallback shares."""
    while True:
        gevent.sleep(1)
        samples = list(SAMPLES)
        if not samples:
            continue
        elapsed = time.monotonic() - STARTED[0]
        latencies = sorted(s[1] for s in samples)
        errors = sum(s[2] == "error" for s in samples) / len(samples)
        fallbacks = sum(s[2].startswith("fallback:") for s in samples) / len(samples)
        print(
            f"  {elapsed:5.1f} s  {len(samples):6d} requests  {len(samples) / elapsed:7.1f}/s "
            f"(asked {rate:g})  p95 {percentile(latencies, 0.95):7.1f} ms  errors {errors:6.2%}  "
            f"fallbacks {fallbacks:6.2%}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
