#!/usr/bin/env python3
"""Soak test: many uploads through a LocalStack stack while workers are SIGKILLed and LocalStack stalls.

What it does (docs/limits-and-reliability.md, "Proven under load", Soak):
1. deploys infra/template.yaml (LocalMode) as a fresh stack, turns on versioning in the derivatives
   bucket (so every rewrite of an output is kept and can be compared with the first write) and sets
   the jobs queue's visibility timeout short, so the workers' visibility heartbeat matters;
2. starts K `derive` worker processes (the real binary, JSON logs with the per-record "processing"
   debug line) and uploads N images from several threads: real photos of several sizes and ~1 % bad
   files (truncated JPEG, text named .jpg);
3. while the queue is busy, SIGKILLs a random worker every T seconds and restarts it, and once, while
   images are in flight, SIGSTOPs LocalStack for S seconds;
4. waits until every upload has settled, stops the workers with SIGTERM, then checks every source in
   S3 and the queues.

It fails (exit 1) when a good image lacks `done` metadata or one of its derivatives, a bad file lacks
`failed` metadata or has no DLQ letter (copies after a crash are counted, not failed), the jobs queue is not empty, a worker panicked,
repeated work exceeds what was in flight at the kills and the stall, or a rewritten output differs
from its first write. Figures go to stdout and to target/soak/<run>/report.json.

Needs LocalStack on the host (`localstack/start.sh`; its pid in .localstack/pid) and a built
`derive` (target/<profile>/derive). `make soak` runs the default size; `make test` a small one.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import datetime as dt
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import botocore.config

ROOT = Path(__file__).resolve().parents[2]
# cargo's target directory: ./target, or CARGO_TARGET_DIR (make test under CI=true builds outside the clone)
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
FIXTURES = ROOT / "tests" / "fixtures" / "images"
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": ENDPOINT,
}

# (fixture, share of good uploads): photos of several sizes, mostly phone-upload-like small ones.
PHOTOS = [
    ("Landscape_1.jpg", 0.20),  # 600x450
    ("Portrait_6.jpg", 0.20),  # 450x600, EXIF orientation 6
    ("Landscape_5.jpg", 0.20),
    ("bad_exif_empty-gpsinfo_gt5.jpg", 0.15),  # 1600x900
    ("camera_canon-sx60hs_orient6.jpg", 0.15),  # 2048x1536 (3 MP)
    ("camera_iphone6_gps-altitude_8mp.jpg", 0.05),  # 3264x2448 (8 MP)
    ("large_olympus-e-p3_12mp.jpg", 0.05),  # 4032x3024 (12 MP)
]
# Bad files and the DLQ kind each must end with.
BAD = [
    ("truncated_canon-sx60hs_20000bytes.jpg", "corrupt"),
    ("not_an_image_text.jpg", "unsupported"),
]


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--uploads", type=int, default=10_000, help="images uploaded (default 10000)")
    p.add_argument("--bad-percent", type=float, default=1.0, help="share of bad files (default 1)")
    p.add_argument("--workers", type=int, default=3, help="worker processes K (default 3)")
    p.add_argument("--concurrency", type=int, default=2, help="messages each worker processes at once")
    p.add_argument("--kill-every", type=float, default=45.0, help="SIGKILL a random worker every T s")
    p.add_argument("--kills", type=int, default=20, help="kills at most (default 20)")
    p.add_argument("--stall", type=float, default=20.0, help="SIGSTOP LocalStack once for S s (0: none)")
    p.add_argument("--stall-at", type=float, default=0.3, help="stall when this share of uploads has settled")
    p.add_argument("--visibility", type=int, default=10, help="jobs queue visibility timeout in s")
    p.add_argument("--worker-visibility", type=int, default=None,
                   help="the workers' --visibility-seconds (default: --visibility)")
    p.add_argument("--upload-threads", type=int, default=8)
    p.add_argument("--profile", default="release", choices=["release", "debug"], help="which derive build")
    p.add_argument("--timeout", type=float, default=3600, help="give up waiting after this many s")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="report directory (default target/soak/<run>)")
    return p.parse_args()


# --- stack ------------------------------------------------------------------------------------------


def deploy(name: str) -> dict:
    out = subprocess.run(
        [str(ROOT / ".venv/bin/python"), str(ROOT / "localstack/deploy.py"), name, "LocalMode=true"],
        capture_output=True,
        text=True,
        env={**os.environ, **AWS_ENV},
    )
    if out.returncode != 0:
        sys.exit(f"deploy failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def localstack_pid() -> int:
    state = ROOT / ".localstack"
    if (state / "mode").read_text().strip() != "host":
        sys.exit("the soak test stalls LocalStack with SIGSTOP: run it on the host (LOCALSTACK_MODE=host)")
    return int((state / "pid").read_text().strip())


def clients():
    config = botocore.config.Config(
        retries={"max_attempts": 10, "mode": "standard"},
        read_timeout=120,
        connect_timeout=10,
        max_pool_connections=32,
    )
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    s3 = session.client(
        "s3", endpoint_url=ENDPOINT, config=config.merge(botocore.config.Config(s3={"addressing_style": "path"}))
    )
    return s3, session.client("sqs", endpoint_url=ENDPOINT, config=config)


# --- workers ----------------------------------------------------------------------------------------


class Workers:
    """K derive processes; each incarnation logs to its own file so a kill's in-flight work is visible."""

    def __init__(self, binary: Path, env: dict, count: int, concurrency: int, logs: Path, visibility: int):
        self.binary, self.env, self.concurrency, self.logs = binary, env, concurrency, logs
        self.visibility = visibility
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.files: list[Path | None] = [None] * count
        self.incarnations = collections.Counter()
        self.killed: list[dict] = []  # {worker, log, at}
        self.lock = threading.Lock()
        for i in range(count):
            self.start(i)

    def start(self, i: int) -> None:
        self.incarnations[i] += 1
        path = self.logs / f"worker-{i}-{self.incarnations[i]}.log"
        out = open(path, "wb")
        self.procs[i] = subprocess.Popen(
            [str(self.binary), "--json-logs", "--wait-seconds", "1", "--concurrency", str(self.concurrency),
             "--visibility-seconds", str(self.visibility)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        out.close()
        self.files[i] = path

    def kill_one(self, rng: random.Random) -> dict:
        with self.lock:
            i = rng.randrange(len(self.procs))
            proc = self.procs[i]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            record = {"worker": i, "log": str(self.files[i]), "at": time.time()}
            self.killed.append(record)
            self.start(i)
            return record

    def restart_crashed(self) -> list[str]:
        """Restarts the workers that exited on their own (a crash, not one of our kills) and says
        which. Under the lock: `kill_one` holds it from its SIGKILL until the restart, so its own
        kill is never seen here as a crash (that race once failed a CI run: "worker 1 exited with -9")."""
        with self.lock:
            crashed = []
            for i, p in enumerate(self.procs):
                if p.poll() is not None:
                    crashed.append(f"worker {i} exited with {p.returncode}")
                    self.start(i)
            return crashed

    def stop(self) -> list[int]:
        with self.lock:
            for p in self.procs:
                p.send_signal(signal.SIGTERM)
            codes = []
            for p in self.procs:
                try:
                    codes.append(p.wait(timeout=120))
                except subprocess.TimeoutExpired:
                    p.kill()
                    codes.append(-9)
            return codes


class LogReader:
    """Reads the workers' JSON log lines as they are written (all incarnations)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.offsets: dict[Path, int] = {}
        self.records: list[dict] = []  # {file, t, msg, key, level}
        self.panics: list[str] = []

    def poll(self) -> None:
        for path in sorted(self.directory.glob("worker-*.log")):
            offset = self.offsets.get(path, 0)
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1
            self.offsets[path] = offset + end
            for line in data[:end].decode("utf-8", "replace").splitlines():
                if "panicked" in line:
                    self.panics.append(f"{path.name}: {line[:400]}")
                if not line.startswith("{"):
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                fields = entry.get("fields", {})
                self.records.append(
                    {
                        "file": path.name,
                        "t": parse_time(entry.get("timestamp")),
                        "msg": fields.get("message", ""),
                        "key": fields.get("key"),
                        "level": entry.get("level"),
                    }
                )

    def settled(self) -> set[str]:
        """Keys with an end recorded: done, dead-lettered, or found done by a redelivery (a worker
        killed after writing metadata.json but before logging "done")."""
        return {r["key"] for r in self.records if r["key"] and r["msg"] in SETTLED}


SETTLED = ("done", "dead-lettered", "already done for this ETag and preset set; skipped")


def parse_time(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# --- the run ----------------------------------------------------------------------------------------


def plan_uploads(count: int, bad_percent: float, rng: random.Random) -> list[tuple[str, str, str | None]]:
    """(key, fixture, expected DLQ kind or None) for every upload, bad files spread through the run."""
    bad = max(1, round(count * bad_percent / 100)) if bad_percent > 0 else 0
    bad_slots = set(rng.sample(range(count), bad))
    names, weights = zip(*PHOTOS)
    plan = []
    for n in range(count):
        if n in bad_slots:
            fixture, kind = BAD[n % len(BAD)]
        else:
            fixture, kind = rng.choices(names, weights)[0], None
        plan.append((f"soak/{n:05d}-{Path(fixture).stem[:24]}.jpg", fixture, kind))
    return plan


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    run = f"soak-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    out_dir = args.out or TARGET / "soak" / run
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    binary = TARGET / args.profile / "derive"
    if not binary.exists():
        sys.exit(f"{binary} is missing: cargo build {'--release ' if args.profile == 'release' else ''}-p imgpipe-derive")
    pid = localstack_pid() if args.stall > 0 else None

    log(f"deploying stack {run}")
    outputs = deploy(run)
    s3, sqs = clients()
    ingest, derivatives = outputs["IngestBucketName"], outputs["DerivativesBucketName"]
    queue, dlq = outputs["JobsQueueUrl"], outputs["DlqUrl"]
    s3.put_bucket_versioning(Bucket=derivatives, VersioningConfiguration={"Status": "Enabled"})
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": str(args.visibility)})

    env = {
        **os.environ,
        **AWS_ENV,
        "IMGPIPE_INGEST_BUCKET": ingest,
        "IMGPIPE_OUTPUT_BUCKET": derivatives,
        "IMGPIPE_DLQ_URL": dlq,
        "IMGPIPE_QUEUE_URL": queue,
        "IMGPIPE_EVENTS_TOPIC_ARN": outputs["EventsTopicArn"],
        "IMGPIPE_RETRY_BASE_SECONDS": "1",
        "IMGPIPE_METRICS": "off",
        "RUST_LOG": "info,imgpipe_cloud::handler=debug",
        "RUST_BACKTRACE": "1",
    }
    plan = plan_uploads(args.uploads, args.bad_percent, rng)
    bodies = {f: (FIXTURES / f).read_bytes() for f in {p[1] for p in plan}}
    workers = Workers(binary, env, args.workers, args.concurrency, logs, args.worker_visibility or args.visibility)
    reader = LogReader(logs)

    uploaded: dict[str, float] = {}
    upload_errors: list[str] = []
    stop_chaos = threading.Event()
    stalled: dict = {}

    def upload(item):
        key, fixture, _ = item
        try:
            s3.put_object(Bucket=ingest, Key=key, Body=bodies[fixture], ContentType="image/jpeg")
            uploaded[key] = time.time()
        except Exception as e:  # reported, and the run fails: an upload the client saw fail
            upload_errors.append(f"{key}: {e}")

    started = time.time()
    log(f"uploading {len(plan)} images ({sum(1 for p in plan if p[2])} bad) with {args.workers} workers")
    pool = concurrent.futures.ThreadPoolExecutor(args.upload_threads)
    uploads = [pool.submit(upload, item) for item in plan]

    def chaos():
        """Kills while there is work; the stall once `stall_at` of the uploads have settled."""
        next_kill = time.time() + args.kill_every * rng.uniform(0.5, 1.0)
        while not stop_chaos.wait(0.5):
            settled = len(reader.settled())
            if pid and not stalled and settled >= args.stall_at * len(plan):
                stalled["start"] = time.time()
                os.kill(pid, signal.SIGSTOP)
                log(f"LocalStack stopped (SIGSTOP) for {args.stall:.0f} s at {settled} settled")
                try:
                    stop_chaos.wait(args.stall)
                finally:
                    os.kill(pid, signal.SIGCONT)
                stalled["end"] = time.time()
                log("LocalStack continued (SIGCONT)")
            if len(workers.killed) < args.kills and time.time() >= next_kill:
                record = workers.kill_one(rng)
                log(f"SIGKILL worker {record['worker']} ({len(workers.killed)}/{args.kills}) at {settled} settled")
                next_kill = time.time() + args.kill_every * rng.uniform(0.5, 1.5)

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    # Reading logs runs here; the chaos thread only reads `reader.settled()` (a snapshot).
    chaos_thread.start()
    expected = {p[0] for p in plan}
    deadline = started + args.timeout
    last_report = 0.0
    progress = [0, time.time()]  # settled count, when it last changed
    crashed: list[str] = []
    while time.time() < deadline:
        time.sleep(1)
        reader.poll()
        settled = reader.settled() & expected
        crashed += workers.restart_crashed()
        if time.time() - last_report > 15:
            last_report = time.time()
            log(f"{len(uploaded)}/{len(plan)} uploaded, {len(settled)} settled, {len(workers.killed)} kills")
        if len(settled) == len(plan) and all(u.done() for u in uploads):
            break
        # Nothing left on the queue and nothing settling: whatever is missing is lost (not waiting
        # out --timeout for messages that no longer exist).
        if len(settled) != progress[0]:
            progress[:] = [len(settled), time.time()]
        elif (
            all(u.done() for u in uploads)
            and time.time() - progress[1] > 30
            and not stalled.get("start", 0) > stalled.get("end", 0)
            and wait_queue_empty(sqs, queue, 0) == 0
        ):
            log(f"queue empty and nothing settled for 30 s: {len(plan) - len(settled)} sources never settled")
            break
    finished = time.time()
    stop_chaos.set()
    chaos_thread.join()
    pool.shutdown(wait=True)
    # Everything settled: wait for the queue to empty (deletes in flight), then stop the workers.
    queue_left = wait_queue_empty(sqs, queue, 60)
    codes = workers.stop()
    reader.poll()

    report = verify(
        args, plan, uploaded, upload_errors, reader, workers, stalled, crashed, codes, queue_left,
        s3, sqs, derivatives, dlq, started, finished,
    )
    report["run"] = run
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    print_report(report)
    log(f"report: {out_dir / 'report.json'}")
    return 0 if not report["problems"] else 1


def wait_queue_empty(sqs, queue: str, seconds: float) -> int:
    deadline = time.time() + seconds
    while True:
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        left = int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
        if left == 0 or time.time() > deadline:
            return left
        time.sleep(1)


def drain(sqs, queue: str) -> list[dict]:
    """Every message on `queue` (received with a long visibility, so each is counted once)."""
    messages, empty = {}, 0
    while empty < 3:
        got = sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=600, WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        empty = 0 if got else empty + 1
        for m in got:
            messages[m["MessageId"]] = m
    return list(messages.values())


def list_versions(s3, bucket: str) -> dict[str, list[dict]]:
    """Every version of every object, oldest first, paged by key/version markers."""
    versions: dict[str, list[dict]] = collections.defaultdict(list)
    kwargs = {"Bucket": bucket}
    seen_markers = set()
    while True:
        page = s3.list_object_versions(**kwargs)
        for v in page.get("Versions", []):
            versions[v["Key"]].append(v)
        if not page.get("IsTruncated"):
            break
        marker = (page.get("NextKeyMarker"), page.get("NextVersionIdMarker"))
        if marker in seen_markers:
            raise RuntimeError(f"ListObjectVersions repeated its markers {marker}")
        seen_markers.add(marker)
        kwargs["KeyMarker"], kwargs["VersionIdMarker"] = marker
    for key in versions:
        unique = {v["VersionId"]: v for v in versions[key]}
        versions[key] = sorted(unique.values(), key=lambda v: v["LastModified"])
    return versions


def verify(args, plan, uploaded, upload_errors, reader, workers, stalled, crashed, codes, queue_left,
           s3, sqs, derivatives, dlq, started, finished) -> dict:
    problems: list[str] = []
    problems += [f"upload failed: {e}" for e in upload_errors[:20]]
    problems += crashed
    if any(c != 0 for c in codes):
        problems.append(f"workers exited with {codes} on SIGTERM")
    if queue_left:
        problems.append(f"jobs queue not empty: {queue_left} messages")
    if reader.panics:
        problems.append(f"{len(reader.panics)} panic lines, first: {reader.panics[0]}")

    log("verifying every source in S3")
    versions = list_versions(s3, derivatives)

    def latest_metadata(key):
        try:
            return json.loads(s3.get_object(Bucket=derivatives, Key=f"derived/{key}/metadata.json")["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        documents = dict(zip([p[0] for p in plan], pool.map(latest_metadata, [p[0] for p in plan])))

    lost, wrong = [], []
    for key, _fixture, bad_kind in plan:
        doc = documents[key]
        if doc is None:
            lost.append(key)
            continue
        if bad_kind is None:
            if doc.get("status") != "done":
                wrong.append(f"{key}: status {doc.get('status')} ({doc.get('error')})")
            missing = [d["key"] for d in doc.get("derivatives", []) if d["key"] not in versions]
            if missing or not doc.get("derivatives"):
                lost.append(key)
                wrong.append(f"{key}: derivatives missing {missing}")
        elif doc.get("status") != "failed" or doc.get("error", {}).get("kind") != bad_kind:
            wrong.append(f"{key}: expected failed/{bad_kind}, got {doc.get('status')} {doc.get('error')}")

    letters = drain(sqs, dlq)
    by_key = collections.Counter(
        m.get("MessageAttributes", {}).get("imgpipe.source_key", {}).get("StringValue") for m in letters
    )
    bad_keys = {p[0] for p in plan if p[2]}
    # At least once: a worker killed between a bad file's failed document and its letter sends the
    # letter again on redelivery, so a key (uploaded once here: one ETag) may have copies.
    dlq_missing = sorted(k for k in bad_keys if by_key[k] == 0)
    duplicate_letters = sum(by_key[k] - 1 for k in bad_keys if by_key[k] > 1)
    dlq_unexpected = sorted(str(k) for k in by_key if k not in bad_keys)
    if lost:
        problems.append(f"lost: {len(lost)} sources, e.g. {lost[:5]}")
    problems += wrong[:20]
    if dlq_missing:
        problems.append(f"bad files with no DLQ letter: {dlq_missing[:10]}")
    if dlq_unexpected:
        problems.append(f"good files in the DLQ: {dlq_unexpected[:10]}")

    # Rewrites: every version of a derivative has the first write's bytes (ETag = MD5 of a single PUT).
    rewritten = {k: v for k, v in versions.items() if len(v) > 1 and not k.endswith("metadata.json")}
    differing = sorted(k for k, v in rewritten.items() if len({x["ETag"] for x in v}) > 1)
    if differing:
        problems.append(f"rewritten outputs differ from their first write: {differing[:10]}")

    # Repeated work, from the workers' records: a key whose processing started more than once.
    starts = collections.Counter(r["key"] for r in reader.records if r["msg"] == "processing")
    repeated = {k: n - 1 for k, n in starts.items() if n > 1}
    in_flight_at_kills = 0
    for kill in workers.killed:
        name = Path(kill["log"]).name
        began = {r["key"] for r in reader.records if r["file"] == name and r["msg"] == "processing"}
        ended = {r["key"] for r in reader.records if r["file"] == name and r["msg"] in ("done", "dead-lettered")}
        kill["in_flight"] = sorted(began - ended)
        in_flight_at_kills += len(kill["in_flight"])
    # Recovery: for each image in flight at a kill, the time from the kill to its end anywhere.
    recovery = []
    for kill in workers.killed:
        for key in kill["in_flight"]:
            ends = [r["t"] for r in reader.records
                    if r["key"] == key and r["msg"] in SETTLED and r["t"] >= kill["at"]]
            if ends:
                recovery.append(min(ends) - kill["at"])
    recovery.sort()
    in_flight_at_stall = 0
    if stalled:
        # Records that started before the stall ended and had not finished when it began. A message
        # received just before the stall may log its start only after it, while its visibility ran
        # out during the stall: starts up to one heartbeat period (visibility / 2) late count too.
        late = args.visibility / 2
        spans = collections.defaultdict(list)
        for r in reader.records:
            if r["key"] and r["msg"] in ("processing", "done", "dead-lettered", "transient failure; will retry"):
                spans[(r["file"], r["key"])].append(r)
        for rs in spans.values():
            opened = None
            for r in sorted(rs, key=lambda r: r["t"]):
                if r["msg"] == "processing":
                    opened = r["t"]
                elif opened is not None:
                    if opened < stalled["end"] + late and r["t"] > stalled["start"]:
                        in_flight_at_stall += 1
                    opened = None
    # A start after a logged transient failure is a retry, not duplicated work.
    retries = sum(1 for r in reader.records if r["key"] and r["msg"] == "transient failure; will retry")
    duplicated = max(0, sum(repeated.values()) - retries)
    bound = in_flight_at_kills + in_flight_at_stall
    if duplicated > bound:
        problems.append(
            f"duplicated work {duplicated} exceeds what was in flight at the kills and the stall ({bound})"
        )

    first_done: dict[str, float] = {}
    for r in reader.records:
        if r["msg"] == "done" and r["key"] not in first_done:
            first_done[r["key"]] = r["t"]
    latencies = sorted(first_done[k] - uploaded[k] for k in first_done if k in uploaded)
    good_done = sum(1 for k, _f, bad in plan if not bad and (documents[k] or {}).get("status") == "done")
    last = max(first_done.values(), default=finished)

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2) if latencies else None

    return {
        "uploads": len(plan),
        "bad_files": len(bad_keys),
        "workers": args.workers,
        "concurrency": args.concurrency,
        "profile": args.profile,
        "kills": len(workers.killed),
        "stall_seconds": round(stalled["end"] - stalled["start"], 1) if stalled else 0,
        "lost": len(lost),
        "done": good_done,
        "failed_documents": sum(1 for d in documents.values() if d and d.get("status") == "failed"),
        "dlq_messages": len(letters),
        "bad_files_in_dlq": len(bad_keys) - len(dlq_missing),
        "duplicate_letters": duplicate_letters,
        "repeated_work": sum(repeated.values()),
        "retries_after_transient_failures": retries,
        "duplicated_work": duplicated,
        "repeated_keys": len(repeated),
        "kill_to_done_s": {
            "n": len(recovery),
            "p50": round(recovery[len(recovery) // 2], 1) if recovery else None,
            "p99": round(recovery[min(len(recovery) - 1, int(len(recovery) * 0.99))], 1) if recovery else None,
            "max": round(recovery[-1], 1) if recovery else None,
        },
        "in_flight_at_kills": in_flight_at_kills,
        "in_flight_at_stall": in_flight_at_stall,
        "rewritten_outputs": len(rewritten),
        "rewritten_outputs_differing": len(differing),
        "panics": len(reader.panics),
        "seconds": round(last - started, 1),
        "throughput_per_s": round(good_done / max(last - started, 1e-9), 2),
        "latency_s": {"p50": pct(0.50), "p99": pct(0.99), "max": round(latencies[-1], 2) if latencies else None,
                      "mean": round(statistics.mean(latencies), 2) if latencies else None},
        "kills_detail": workers.killed,
        "problems": problems,
    }


def print_report(r: dict) -> None:
    print(
        f"""
soak: {r['uploads']} uploads ({r['bad_files']} bad), {r['workers']} workers x {r['concurrency']} ({r['profile']}),
      {r['kills']} SIGKILLs, LocalStack stalled {r['stall_seconds']} s
  lost                    {r['lost']}
  done                    {r['done']}
  DLQ messages            {r['dlq_messages']} (bad files with a letter: {r['bad_files_in_dlq']}/{r['bad_files']}, extra copies after crashes: {r['duplicate_letters']})
  repeated work           {r['repeated_work']} starts on {r['repeated_keys']} keys: {r['retries_after_transient_failures']} retries after a transient failure,
                          {r['duplicated_work']} duplicated (bound: in flight {r['in_flight_at_kills']} at the kills + {r['in_flight_at_stall']} in the stall)
  rewritten outputs       {r['rewritten_outputs']} ({r['rewritten_outputs_differing']} differ from the first write)
  panics                  {r['panics']}
  throughput              {r['throughput_per_s']} images/s over {r['seconds']} s
  latency upload→done     p50 {r['latency_s']['p50']} s, p99 {r['latency_s']['p99']} s, max {r['latency_s']['max']} s
  kill→done (in flight)   p50 {r['kill_to_done_s']['p50']} s, p99 {r['kill_to_done_s']['p99']} s, max {r['kill_to_done_s']['max']} s over {r['kill_to_done_s']['n']} images
"""
    )
    for p in r["problems"]:
        print(f"  PROBLEM: {p}")
    print("soak: " + ("FAILED" if r["problems"] else "passed"))


if __name__ == "__main__":
    sys.exit(main())
