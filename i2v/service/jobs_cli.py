"""``python -m i2v jobs`` (the job history) and ``python -m i2v requeue`` (interrupted jobs, again).

Re-queueing goes through the running app when one answers (``/requeue`` of its API), because the app's engine
lock is what keeps two generations off one GPU: a second process generating beside it would break that. With no
app running, the jobs run right here, in this process, recorded in the same job database.
"""
from __future__ import annotations

import json
import logging
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from i2v.errors import BadInputError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED = 0, 1


def add_parsers(sub) -> None:
    jobs = sub.add_parser("jobs", help="list the app's jobs (newest first) from outputs/jobs.sqlite3")
    jobs.add_argument("--state", choices=("queued", "running", "done", "failed", "cancelled", "interrupted"))
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--output-dir", type=Path, help="the app's output folder (default: I2V_OUTPUT_DIR or outputs/)")
    jobs.add_argument("--json", action="store_true")

    requeue = sub.add_parser("requeue", help="queue interrupted jobs again (through the running app if any)")
    requeue.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="default: every interrupted job")
    requeue.add_argument("--url", help="the running app (default: from I2V_HOST / I2V_PORT)")
    requeue.add_argument("--output-dir", type=Path, help="with no app running: its output folder")


def list_jobs(args) -> int:
    from i2v.service.jobstore import STATES, JobStore

    store = JobStore.in_folder(_output_dir(args))
    records = store.recent(args.limit, states=(args.state,) if args.state else STATES)
    if args.json:
        print(json.dumps([{"id": r.id, "state": r.state, "created_at": r.created_at, "settings": r.settings,
                           "error": r.error_message} for r in records], indent=2))
        return EXIT_OK
    for record in records:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.created_at))
        prompt = (record.settings.get("prompt") or "")[:60]
        note = f"  ({record.error_message})" if record.error_message else ""
        print(f"{record.id}  {record.state:<11} {when}  {prompt}{note}")
    if not records:
        print("no jobs")
    return EXIT_OK


def requeue(args) -> int:
    from i2v.settings import load_settings

    settings = load_settings([])
    url = args.url or f"http://{_local(settings.host)}:{settings.port}/"
    if _answers(url):
        return _requeue_through_app(url if url.endswith("/") else url + "/", args.job_ids, settings.auth)
    log.info("no app answers on %s: running the jobs in this process", url)
    return _requeue_here(_output_dir(args), args.job_ids)


def _requeue_through_app(url: str, job_ids: list[str], auth) -> int:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    headers = None
    if auth is not None:
        from i2v.web.auth import basic_auth_header

        headers = basic_auth_header(auth.user, auth.password)
    client = Client(url, headers=headers, verbose=False)
    failed = False
    for job_id in job_ids or [""]:
        try:
            answer = client.predict(job_id, api_name="/requeue")
        except AppError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
            continue
        for old, new in answer["requeued"].items():
            print(f"{old} → queued again as {new} in the app at {url}")
        for message in answer["errors"]:
            print(f"error: {message}", file=sys.stderr)
            failed = True
        if not answer["requeued"] and not answer["errors"]:
            print("no interrupted job to re-queue")
    return EXIT_FAILED if failed else EXIT_OK


def _requeue_here(output_dir: Path, job_ids: list[str]) -> int:
    from i2v.engine.engine import Engine
    from i2v.service.folder_lock import FolderLock
    from i2v.service.jobs import JobManager

    lock = FolderLock(output_dir).acquire()  # an app on another port may still be working here
    jobs = JobManager(Engine(output_dir=output_dir))
    jobs.recover()  # no app runs on this folder: what it left running is interrupted too
    targets = job_ids or jobs.interrupted()
    if not targets:
        print("no interrupted job to re-queue")
        return EXIT_OK
    new_ids, failed = [], False
    for job_id in targets:
        try:
            new_ids.append((job_id, jobs.requeue(job_id)))
        except BadInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
    try:
        for old, new in new_ids:
            status = jobs.wait(new)  # until it finishes
            if status.state == "done":
                videos = ", ".join(v["path"] for v in status.result["videos"])
                print(f"{old} → {new}: done: {videos}")
            else:
                print(f"{old} → {new}: {status.state}: {status.error_message}", file=sys.stderr)
                failed = True
    finally:
        jobs.shutdown()
        lock.release()
    return EXIT_FAILED if failed else EXIT_OK


def _output_dir(args) -> Path:
    from i2v.paths import outputs_dir

    return args.output_dir or outputs_dir()


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url.rstrip("/") + "/healthz", timeout=2)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True
