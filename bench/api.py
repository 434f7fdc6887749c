"""API throughput: serve seeded data with `billing serve --no-worker`, drive it, print req/s, latency and CPU.

    apt-get install -y wrk        # the read routes are driven by wrk (Debian package)
    .venv/bin/python bench/api.py                                # PostgreSQL and SQLite
    .venv/bin/python bench/api.py --database sqlite --duration 5
    .venv/bin/python bench/api.py --code /path/to/other/checkout --label before
    .venv/bin/python bench/api.py --workers 2                    # `billing serve --workers 2`

For each database the bench makes a scratch database (PostgreSQL: the database named by
--postgres-url is dropped and re-created; SQLite: a file in a temporary directory), migrates it,
registers a sandbox client that signs v2, a plan, and `--subscriptions` cardholders, each with a
card, an active subscription and `--history` past charges; one subscription has 50 charges (the
payment-history route). Then it starts `billing serve --no-worker` from `--code` (default: this
checkout) and measures, one after the other:

- `/health`, GET subscription detail, GET payment history (50 charges), GET plans list: wrk,
  `--connections` connections, `--duration` seconds each;
- enrolments (POST /transactions then POST verify-card with a sandbox card and the plan, both signed
  v2 with fresh signatures): a closed-loop Python generator with `--writers` concurrent loops;
- mixed: the Python generator, 90% reads (detail, history, plans) and 10% enrolments;
- renewals: a separate process runs renewal passes over the (all due) subscriptions for
  `--duration` seconds with the API idle, then again while the API serves the mixed profile.

Server CPU per request is the CPU time (user + system) the server process and its children used
during the phase divided by the requests answered; "database" is the same for the PostgreSQL
backends connected to the bench's database (0 on SQLite, which runs inside the server), "machine"
the busy time of every core (server, database, load generator, and anything else running: only
meaningful on a quiet machine). Every figure comes from one run on one machine:
the load generators and the renewal process share the CPU with the server, so on a small loaded
machine they lower what the server can reach; compare figures of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ondemand import _free_port, recreate_database  # noqa: E402 - bench/ondemand.py, next to this script
from ondemand import seed as seed_cardholders  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/billing_bench_api"
CARD = {"number": "4242424242424242", "expMonth": 12, "expYear": 2035, "cvv": "123", "holderName": "Bench"}
TICKS = os.sysconf("SC_CLK_TCK")
_SECRET = secrets.token_urlsafe(48)


@dataclass
class Variant:
    label: str
    code: Path
    workers: int

    @classmethod
    def parse(cls, text: str) -> Variant:
        label, _, rest = text.partition("=")
        path, _, workers = rest.partition(":")
        return cls(label, Path(path or ROOT).resolve(), int(workers or 1))


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # server CPU over the phase
    errors: int = 0
    database_ms: float = 0.0  # PostgreSQL's processes over the phase (0 on SQLite: it is in the server)
    machine_ms: float = 0.0  # every core's busy time over the phase: server, database and load generator

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        per = self.cpu_ms / self.requests if self.requests else 0.0
        errors = f"  errors {self.errors}" if self.errors else ""
        database = self.database_ms / self.requests if self.requests else 0.0
        machine = self.machine_ms / self.requests if self.requests else 0.0
        return (
            f"  {self.name:<28} {self.rate:9.1f} req/s   p50 {self.p50_ms:7.1f} ms   p99 {self.p99_ms:7.1f} ms"
            f"   server CPU {per:6.2f} ms/req   database {database:5.2f}   machine {machine:6.2f}{errors}"
        )


# ---- the database -----------------------------------------------------------------------------


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def scratch_database(kind: str, postgres_url: str, workdir: Path) -> str:
    """An empty, migrated database; answers its async URL."""
    if kind == "postgresql":
        recreate_database(postgres_url)  # bench/ondemand.py: drop, create, migrate
        return postgres_url
    from billing.store.migrations import upgrade

    path = workdir / "bench.db"
    path.unlink(missing_ok=True)
    upgrade(f"sqlite:///{path}")
    return f"sqlite+aiosqlite:///{path}"


@dataclass
class Seeded:
    client_id: str
    private_key_pem: str
    plan_id: str
    subscriptions: list[str]
    history_subscription: str


def seed(url: str, count: int, history: int) -> Seeded:
    """A sandbox client (signs v2), a plan, `count` cardholders with a card, a due subscription and history.

    Client, plan, cards and subscriptions come from bench/ondemand.py's seed; here every subscription
    is made due now (for the renewal phases) and gets `history` past charges (the first one 50).
    """
    import sqlalchemy as sa

    from billing.settings import load_settings
    from billing.store.models import Charge, Subscription

    client_id, pem, subs = asyncio.run(seed_cardholders(url, count))
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    period_start = due - timedelta(days=30)
    engine = sa.create_engine(load_settings(database={"url": url}).database.sync_url)
    table = Subscription.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            sa.update(table).values(
                current_period_start=period_start,
                current_period_end=due,
                next_attempt_at=due,
                period_index=history,
                # The bench plan renews every 30 days (UTC): anchored so that the period now due,
                # `history` + 1, starts today and the renewal pass charges it.
                anchor_date=due.date() - timedelta(days=30 * (history + 1)),
            )
        )
        charges = []
        for n, sub_id in enumerate(subs):
            past = 50 if n == 0 else history
            for k in range(past):
                at = period_start - timedelta(days=30 * (past - k))
                charges.append(
                    {
                        "id": f"chg_bench_{n:012d}_{k:04d}",
                        "client_id": client_id,
                        "subscription_id": sub_id,
                        "kind": "renewal",
                        "amount_minor": 1000,
                        "currency": "USD",
                        "payment_method_id": f"pm_bench{n:022d}",
                        "processor": "sandbox",
                        "period_start": at,
                        "period_index": k,
                        "state": "succeeded",
                        "processor_reference": f"sbx_bench_{n}_{k}",
                        "idempotency_key": f"bench:{n}:{k}",
                        "created_at": at,
                        "updated_at": at,
                    }
                )
        for start in range(0, len(charges), 20_000):
            conn.execute(sa.insert(Charge.__table__), charges[start : start + 20_000])  # type: ignore[attr-defined]
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE"))
        conn.commit()
    engine.dispose()
    return Seeded(client_id, pem, "pln_bench", subs, subs[0])


# ---- the server ----------------------------------------------------------------------------------


def _env(code: Path, url: str, workdir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update(
        PYTHONPATH=str(code),
        BILLING_DATABASE__URL=url,
        BILLING_DATABASE__AUTO_MIGRATE="false",
        BILLING_DATABASE__POOL_SIZE="20",
        BILLING_DATA_DIR=str(workdir),
        BILLING_LOG_LEVEL="INFO",  # one access-log line per request, as deployed (to a file here)
        BILLING_SERVER__PORT=str(port),
        BILLING_AUTH__ACCESS_TOKEN_TTL_SECONDS="7200",
        BILLING_AUTH__JWT_SECRET=_SECRET,
        # One merchant drives the whole load, far past a client's budget (api/rate_limits.py); the
        # limiter still runs on every request, so its cost is in the figures.
        BILLING_RATE_LIMITS__CLIENT_REQUESTS="100000000",
    )
    return env


def _billing() -> str:
    return str(Path(sys.executable).with_name("billing"))


@contextmanager
def serving(code: Path, url: str, workdir: Path, workers: int) -> Iterator[tuple[str, int]]:
    port = _free_port()
    command = [sys.executable, "-c", "from billing.cli import main; main()", "serve", "--no-worker"]
    if workers > 1:
        command += ["--workers", str(workers)]
    log = (workdir / f"server-{port}.log").open("w")
    process = subprocess.Popen(
        command, env=_env(code, url, workdir, port), stdout=log, stderr=log, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(300):
            if process.poll() is not None:
                raise SystemExit(f"the server stopped: see {log.name}")
            try:
                if httpx.get(base + "/health", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield base, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_ms(pid: int) -> float:
    """User + system CPU of a process and its descendants (live ones), in milliseconds."""
    total = 0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total * 1000 / TICKS


def database_cpu_ms(name: str | None) -> float:
    """User + system CPU of the local PostgreSQL backends serving database `name`, in milliseconds.

    A backend's process title names its database; the server's pooled connections live through a
    phase, so the difference over a phase is what they spent on it. 0 without a name (SQLite).
    """
    if name is None:
        return 0.0
    title = f" {name} ".encode()
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() != "postgres":
                    continue
                if title not in (entry / "cmdline").read_bytes().replace(b"\0", b" ") + b" ":
                    continue
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
    return total * 1000 / TICKS


def machine_busy_ms() -> float:
    """Busy time of all cores (everything but idle and I/O wait), in milliseconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) * 1000 / TICKS


class Meter:
    """Server, database and machine CPU spent between ``start()`` and ``stop()``."""

    def __init__(self, pid: int, database: str | None) -> None:
        self.pid = pid
        self.database_name = database
        self.server = self.database = self.machine = 0.0

    def start(self) -> Meter:
        self.server, self.database, self.machine = (
            cpu_ms(self.pid),
            database_cpu_ms(self.database_name),
            machine_busy_ms(),
        )
        return self

    def stop(self) -> tuple[float, float, float]:
        return (
            cpu_ms(self.pid) - self.server,
            database_cpu_ms(self.database_name) - self.database,
            machine_busy_ms() - self.machine,
        )


# ---- load ---------------------------------------------------------------------------------------


class Merchant:
    def __init__(self, base: str, seeded: Seeded) -> None:
        from billing.domain.signatures import canonical_request, sign

        self.base = base
        self.seeded = seeded
        self._canonical = canonical_request
        self._sign = sign
        self._n = 0
        self.token = self._login()

    def _login(self) -> str:
        import httpx

        ts = str(int(time.time()))
        signature = self._sign(self.seeded.private_key_pem, f"{self.seeded.client_id}.{ts}".encode())
        response = httpx.post(
            self.base + "/v1/auth/login",
            json={"clientId": self.seeded.client_id, "timestamp": ts, "signature": signature},
        )
        response.raise_for_status()
        return str(response.json()["data"]["accessToken"])

    def signed(self, path: str, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        raw = json.dumps(body).encode()
        ts = str(int(time.time()))
        message = self._canonical(
            "v2", timestamp=ts, method="POST", target=path, idempotency_key=None, body=raw
        )
        return raw, {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "X-Timestamp": ts,
            "X-Signature-Version": "2",
            "X-Signature": self._sign(self.seeded.private_key_pem, message),
        }

    def next_user(self) -> str:
        self._n += 1
        return f"bench-new-{os.getpid()}-{self._n}"

    def read_paths(self) -> list[str]:
        sub = random.choice(self.seeded.subscriptions)
        return [
            f"/v1/subscriptions/detail/{sub}",
            f"/v1/subscriptions/payment-history?subscriptionId={self.seeded.history_subscription}",
            "/v1/plans/list",
        ]


def _wrk_ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def run_wrk(name: str, url: str, token: str, args: argparse.Namespace, meter: Meter) -> Result:
    command = ["wrk", "-t2", f"-c{args.connections}", f"-d{int(args.duration)}s", "--latency"]
    command += ["-H", f"Authorization: Bearer {token}", url]
    meter.start()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    spent, database, machine = meter.stop()
    requests = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))  # type: ignore[union-attr]
    seconds = float(args.duration)
    p50 = _wrk_ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _wrk_ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(
        name, requests, seconds, p50, p99, spent, int(errors.group(1)) if errors else 0, database, machine
    )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _closed_loop(
    merchant: Merchant, loops: int, seconds: float, read_share: float
) -> tuple[int, int, list[float], int]:
    """`loops` concurrent clients; each picks a read (probability `read_share`) or an enrolment.

    Answers (requests, enrolments, per-request latencies in ms, errors).
    """
    import httpx

    stop_at = time.perf_counter() + seconds
    latencies: list[float] = []
    counts = {"requests": 0, "enrolments": 0, "errors": 0}
    limits = httpx.Limits(max_connections=loops, max_keepalive_connections=loops)
    async with httpx.AsyncClient(base_url=merchant.base, limits=limits, timeout=60) as http:
        read_headers = {"Authorization": f"Bearer {merchant.token}"}

        async def timed(method: str, path: str, **kwargs: Any) -> httpx.Response | None:
            started = time.perf_counter()
            try:
                response = await http.request(method, path, **kwargs)
            except httpx.TransportError:
                # e.g. a keep-alive connection the server closed just as it was reused
                counts["errors"] += 1
                return None
            latencies.append((time.perf_counter() - started) * 1000)
            counts["requests"] += 1
            if response.status_code >= 300:
                counts["errors"] += 1
            return response

        async def enrol() -> None:
            user = merchant.next_user()
            raw, headers = merchant.signed("/transactions", {"amount": 1, "currency": "USD", "userId": user})
            trx = await timed("POST", "/transactions", content=raw, headers=headers)
            if trx is None or trx.status_code != 201:
                return
            body = {
                "uid": trx.json()["data"]["uid"],
                "processor": "sandbox",
                "cardInfo": CARD,
                "shouldCreateSubscription": True,
                "planUid": merchant.seeded.plan_id,
            }
            raw, headers = merchant.signed("/v1/subscriptions/verify-card", body)
            verified = await timed("POST", "/v1/subscriptions/verify-card", content=raw, headers=headers)
            if verified is not None and verified.status_code == 200:
                counts["enrolments"] += 1

        async def loop() -> None:
            while time.perf_counter() < stop_at:
                if random.random() < read_share:
                    await timed("GET", random.choice(merchant.read_paths()), headers=read_headers)
                else:
                    await enrol()

        await asyncio.gather(*(loop() for _ in range(loops)))
    return counts["requests"], counts["enrolments"], latencies, counts["errors"]


def run_generator(
    name: str, merchant: Merchant, args: argparse.Namespace, meter: Meter, read_share: float
) -> Result:
    meter.start()
    started = time.perf_counter()
    requests, enrolments, latencies, errors = asyncio.run(
        _closed_loop(
            merchant, args.writers if read_share == 0 else args.connections, args.duration, read_share
        )
    )
    seconds = time.perf_counter() - started
    spent, database, machine = meter.stop()
    result = Result(
        name,
        requests,
        seconds,
        _percentile(latencies, 0.5),
        _percentile(latencies, 0.99),
        spent,
        errors,
        database,
        machine,
    )
    result.name = f"{name} ({enrolments / seconds:.1f} enrolments/s)"
    return result


# ---- renewals -----------------------------------------------------------------------------------

RENEWER_START_SECONDS = 10.0  # room for the renewal process to import and connect on a busy host

_RENEWER = """
import asyncio, sys, time
from billing.domain.clock import SystemClock
from billing.processors.sandbox import SandboxProcessor
from billing.services.pass_control import stop_when
from billing.services.renewals import RenewalPass
from billing.services.runtime import build_runtime
from billing.settings import load_settings

async def main(seconds, start_at):
    runtime = build_runtime(load_settings(), SystemClock(), processors={"sandbox": SandboxProcessor()})
    await asyncio.sleep(max(0.0, start_at - time.time()))  # start with the API load, imports done
    started = time.perf_counter()
    try:
        # A pass drains everything due; it stops between batches once the phase is over.
        with stop_when(lambda: time.perf_counter() - started >= seconds):
            summary = await RenewalPass(runtime, "bench-api").run()
    finally:
        await runtime.aclose()
    print(summary.renewed, time.perf_counter() - started)

asyncio.run(main(float(sys.argv[1]), float(sys.argv[2])))
"""


def start_renewals(
    code: Path, url: str, workdir: Path, seconds: float
) -> tuple[subprocess.Popen[str], float]:
    """A renewal process that runs passes for `seconds` from the instant answered (a few seconds ahead)."""
    env = _env(code, url, workdir, 1)
    start_at = time.time() + RENEWER_START_SECONDS
    process = subprocess.Popen(
        [sys.executable, "-c", _RENEWER, str(seconds), str(start_at)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, start_at


def wait_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.time()))


def renewal_rate(process: subprocess.Popen[str]) -> tuple[int, float]:
    out, _ = process.communicate()
    renewed, seconds = out.split()
    return int(renewed), float(seconds)


# ---- main ---------------------------------------------------------------------------------------


def bench_database(kind: str, args: argparse.Namespace, workdir: Path, variant: Variant) -> list[str]:
    started = time.perf_counter()
    url = scratch_database(kind, args.postgres_url, workdir)
    seeded = seed(url, args.subscriptions, args.history)
    lines = [
        f"{kind}, {variant.label}: {args.subscriptions} subscriptions seeded with history in"
        f" {time.perf_counter() - started:.1f} s; code {variant.code}; API processes {variant.workers}"
    ]
    print(lines[0], flush=True)
    code = variant.code
    database = url.rsplit("/", 1)[1] if kind == "postgresql" else None  # PostgreSQL's CPU: its backends
    with serving(code, url, workdir, variant.workers) as (base, pid):
        merchant = Merchant(base, seeded)
        reads = [
            ("/health", "/health"),
            (
                "GET subscription detail",
                f"/v1/subscriptions/detail/{seeded.subscriptions[len(seeded.subscriptions) // 2]}",
            ),
            (
                "GET payment history (50)",
                f"/v1/subscriptions/payment-history?subscriptionId={seeded.history_subscription}",
            ),
            ("GET plans list", "/v1/plans/list"),
        ]
        for name, path in reads:
            result = run_wrk(name, base + path, merchant.token, args, Meter(pid, database))
            lines.append(result.line())
            print(lines[-1], flush=True)
        result = run_generator(
            "enrolments (trx+verify)", merchant, args, Meter(pid, database), read_share=0.0
        )
        lines.append(result.line())
        print(lines[-1], flush=True)
        idle, _ = start_renewals(code, url, workdir, args.duration)
        renewed_idle, seconds_idle = renewal_rate(idle)
        loaded, start_at = start_renewals(code, url, workdir, args.duration)
        wait_until(start_at)
        result = run_generator("mixed 90/10", merchant, args, Meter(pid, database), read_share=0.9)
        renewed_loaded, seconds_loaded = renewal_rate(loaded)
        lines.append(result.line())
        print(lines[-1], flush=True)
        idle_rate, loaded_rate = renewed_idle / seconds_idle, renewed_loaded / seconds_loaded
        lines.append(
            f"  renewals: idle {idle_rate:.1f}/s, during the mixed profile {loaded_rate:.1f}/s"
            f" ({100 * loaded_rate / idle_rate if idle_rate else 0:.0f}% of idle)"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=["postgresql", "sqlite", "both"], default="both")
    parser.add_argument(
        "--postgres-url", default=DEFAULT_POSTGRES, help="scratch database: dropped and re-created"
    )
    parser.add_argument(
        "--variant",
        action="append",
        type=Variant.parse,
        help="LABEL=CHECKOUT[:PROCESSES], repeatable: the checkout whose `billing serve` is measured and its"
        " number of API processes (default: this checkout, --workers). Every variant gets a freshly seeded"
        " database and runs right after the previous one, so variants of one run share the conditions.",
    )
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=3, help="past charges per subscription")
    parser.add_argument("--duration", type=int, default=10, help="seconds per phase")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections / mixed-profile loops")
    parser.add_argument("--writers", type=int, default=8, help="concurrent enrolment loops")
    parser.add_argument("--workers", type=int, default=1, help="`billing serve --workers` (default variant)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/api.py needs wrk: install it with `apt-get install -y wrk` (Debian package).")
    kinds = ["postgresql", "sqlite"] if args.database == "both" else [args.database]
    report: list[str] = []
    variants = args.variant or [Variant("this checkout", ROOT, args.workers)]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        for kind in kinds:
            for variant in variants:
                report += bench_database(kind, args, Path(tmp), variant)
    print(
        f"\n== api bench: {os.cpu_count()} CPUs; load average {load_before:.1f} at the start,"
        f" {os.getloadavg()[0]:.1f} at the end"
    )
    print("\n".join(report))


if __name__ == "__main__":
    main()
