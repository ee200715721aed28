"""Jobs that live on the server, not in a browser tab.

``JobManager.submit`` validates a request (the same checks as a run, nothing loaded), fixes its seed, keeps a copy
of the input picture, records the job in the ``JobStore`` and queues it. The workers (``i2v/workers``: the app's
own process, or a process per GPU) take the queue in order, one job each at a time; a job whose worker process died
or hung under it goes back to the head of the queue under the same id, once (a second time it fails with the
reason). Pages ask ``status(job_id)`` whenever they like: a closed or reloaded tab loses nothing, and a job is only
stopped by ``cancel``. A job belongs to whoever submitted it (``owner``: the page's per-browser secret, an API
call's Gradio session): only the same secret may cancel it (``may_control``), unless ``shared_control`` lets
everyone; the job database keeps a SHA-256 of the secret, never the secret. How a job ended reaches its caller and
the page even when the job database cannot be written (a full disk): the outcome waits in memory and a worker's
thread writes it again until the database takes it.
"""
from __future__ import annotations

import glob
import hashlib
import hmac
import logging
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from i2v.engine.engine import Engine
from i2v.loras.choice import lora_choices
from i2v.errors import BadInputError, NotEnoughDiskSpaceError, OutputWriteError, without_server_paths
from i2v.guidance.images import check_file_size
from i2v.service.jobstore import JobRecord, JobStore
from i2v.logs import job_context, new_job_id
from i2v.engine.progress import CancelToken, Preview, ProgressEvent
from i2v.service.eta import Eta
from i2v.engine.request import MAX_SEED, GenerationRequest, validate_request
from i2v.engine.resolve import PreparedJob
from i2v.engine.run import GenerationResult
from i2v.workers.dispatch import Dispatcher
from i2v.workers.gpu_room import GpuRoom
from i2v.workers.outcome import RunOutcome, WorkerInfo
from i2v.workers.worker import InProcessWorker, Worker

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 8
KEPT_PREVIEWS = 16  # the newest preview of this many jobs stays in memory (a few hundred kB each at most)
RETRY_SECONDS = 5.0  # how often an outcome the job database refused (a full disk) is written again
# What a write to the job database raises when its disk is full, read-only or gone ("database or disk is full").
STORE_ERRORS = (sqlite3.Error, OSError)
INPUTS_FOLDER = "inputs"
# Pillow's format name -> the kept copy's suffix (the file route serves a type guessed from the suffix).
KEPT_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
                 "TIFF": ".tiff"}
# Request fields a history entry needs to "load these settings" (the image is kept as a file beside them).
SETTING_FIELDS = ("prompt", "negative_prompt", "preset", "resolution", "width", "height", "frames", "steps",
                  "guidance", "fps", "seeds", "candidates", "auto_enhance", "model", "family", "transformer_file",
                  "dtype", "device", "audio", "framing")


NOT_YOURS = ("This job was started in another browser (or by a script): only the browser that started it can "
             "cancel it. You can watch it here.")


def owner_digest(secret: str | None) -> str | None:
    """What the job database keeps of a submitter's secret; None for no secret (a job anyone may steer)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest() if secret else None


class JobListener:
    """Told when a worker starts and finishes a job (the web app's metrics). Called on a worker's thread, so it
    must be quick; what it raises is logged and ignored, since no job may fail for its bookkeeping."""

    def job_started(self, job_id: str) -> None:
        pass

    def job_finished(self, job_id: str, state: str, *, kind: str | None, result: GenerationResult | None,
                     seconds: float) -> None:
        """``state``: done | failed | cancelled | interrupted (its worker died under it: the same job runs once
        more, and is started and finished again); ``kind``: the error kind of a failed job."""


class InputNotKeptError(BadInputError):
    """The uploaded picture could not be copied into outputs/inputs/ (disk full, folder not writable). Refused at
    submit like bad input, so the page and the API show the message; it names the folder and what to do."""


class JobNotRecordedError(BadInputError):
    """The job database could not take a new job (its disk is full). Refused at submit, with nothing written."""


class QueueFullError(BadInputError):
    """More jobs are waiting than the queue holds. The message says how many; try again later."""


@dataclass
class JobStatus:
    """What a page shows about one job at one moment."""

    id: str
    state: str  # queued | running | done | failed | cancelled | interrupted
    settings: dict[str, Any]
    created_at: float
    position: int | None = None  # jobs ahead of this one while queued (0: next)
    progress: dict[str, Any] | None = None  # the last ProgressEvent as a dict
    eta_s: float | None = None
    result: dict[str, Any] | None = None
    error_kind: str | None = None
    error_message: str | None = None
    image_path: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    model_resident: bool | None = None  # while running: the model was in memory at the start (no load to wait for)
    cancel_requested: bool = False  # running, told to stop: it ends at its next step

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled", "interrupted")


@dataclass
class _LiveJob:
    id: str
    request: GenerationRequest
    record: JobRecord
    cancel: CancelToken = field(default_factory=CancelToken)
    progress: ProgressEvent | None = None
    eta: Eta = field(default_factory=Eta)
    started_at: float | None = None
    model_resident: bool | None = None  # set when it starts
    worker: Any = None  # the worker that took it (workers.Worker)
    preview: Preview | None = None  # the newest live preview, once the engine made one
    first_run_lost: str | None = None  # why its first run ended without an outcome (its worker died): it runs again
    peak_bytes: int | None = None  # the planner's predicted peak GPU memory at submit (None: no prediction)


@dataclass(frozen=True)
class _Outcome:
    """How a job ended. Kept in memory until the job database has it: on a full disk it may refuse the write,
    and the caller and the page must learn the outcome all the same."""

    state: str  # done | failed | cancelled
    kind: str | None = None
    message: str | None = None
    summary: dict[str, Any] | None = None
    finished_at: float = field(default_factory=time.time)

    def write(self, store: JobStore, job_id: str) -> None:
        if self.state == "done":
            store.mark_done(job_id, self.summary or {}, finished_at=self.finished_at)
        elif self.state == "failed":
            store.mark_failed(job_id, self.kind or "internal", self.message or "", finished_at=self.finished_at)
        else:
            store.mark_cancelled(job_id, finished_at=self.finished_at)


def request_settings(request: GenerationRequest) -> dict[str, Any]:
    """The request without its picture, as JSON-able values."""
    settings = {name: getattr(request, name) for name in SETTING_FIELDS}
    settings["seeds"] = list(request.seeds)
    settings["crop_focus"] = list(request.crop_focus)
    settings["loras"] = [choice.to_dict() for choice in request.loras]
    # The app's own copy of the last frame (JobManager.submit keeps it beside the picture), when there is one.
    settings["last_image"] = str(request.last_image) if isinstance(request.last_image, (str, Path)) else None
    return settings


def request_from_settings(settings: dict[str, Any], image: Any) -> GenerationRequest:
    values = {name: settings[name] for name in SETTING_FIELDS if name in settings}
    values["seeds"] = tuple(values.get("seeds") or ())
    # Jobs recorded before framing existed were centre-cropped: the defaults say so.
    return GenerationRequest(image=image, last_image=settings.get("last_image"),
                             loras=lora_choices(settings.get("loras")),
                             crop_focus=tuple(settings.get("crop_focus") or (0.5, 0.5)), **values)


class JobManager:
    def __init__(self, engine: Engine, store: JobStore | None = None, *, max_queue: int = DEFAULT_MAX_QUEUE,
                 listener: JobListener | None = None, retry_seconds: float = RETRY_SECONDS,
                 shared_control: bool = False, expected_seconds: Callable[[PreparedJob], float | None] | None = None,
                 workers: Sequence[Worker] | None = None, gpu_room: GpuRoom | None = None):
        self.engine = engine
        # Denoising seconds learned from earlier jobs on this device (server.expected_seconds): the ETA's first guess.
        self.expected_seconds = expected_seconds
        self.shared_control = shared_control  # every caller may steer every job (the admin's choice)
        self.listener = listener or JobListener()
        self.store = store or JobStore.in_folder(engine.output_dir)
        self.max_queue = max_queue
        self.retry_seconds = retry_seconds
        self._queue: deque[_LiveJob] = deque()
        self._running: dict[str, _LiveJob] = {}  # job id -> the job, in the order they started
        self._unrecorded: dict[str, tuple[_LiveJob, _Outcome]] = {}  # ended, but not in the database yet
        self._previews: dict[str, Preview] = {}  # job id -> its newest live preview, oldest job first
        self._next_retry = 0.0  # monotonic time of the next try to write them
        self._changed = threading.Condition()
        self._stopping = False
        # Without workers given, the app's own process runs one job at a time (the CLI, a box without a GPU).
        # ``gpu_room``: a job goes to a worker whose GPU has room for its predicted peak, where one has.
        self._dispatch = Dispatcher(workers or [InProcessWorker(engine)], self._queue, self._changed, self, gpu_room)

    # -- start-up ------------------------------------------------------------------------------------------
    def recover(self) -> list[JobRecord]:
        """Mark jobs a previous process left unfinished as interrupted and sweep the files they left."""
        interrupted = self.store.mark_unfinished_interrupted()
        for record in interrupted:
            swept = self._sweep_files_of(record.id)
            log.warning("job %s was %s when the app stopped: marked interrupted, %d file(s) it left removed",
                        record.id, record.state, swept)
        return interrupted

    def _sweep_files_of(self, job_id: str) -> int:
        """Every file a job wrote under outputs/DATE/ (named ``HHMMSS_<id>_NN_seedS``): the partials of the mp4,
        its record and poster, and also candidates that were finished before the stop. The history says nothing
        was saved from an interrupted job, so a video it never recorded must not linger beside the recorded ones."""
        swept = 0
        for path in self.engine.output_dir.glob(f"*/*_{glob.escape(job_id)}_*"):
            if path.is_file():
                path.unlink(missing_ok=True)
                swept += 1
        return swept

    # -- submitting ----------------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest, owner: str | None = None) -> str:
        """Queue a job and return its id. Bad input and a full queue raise ``BadInputError`` right here, and a
        refused request writes nothing: the picture is kept only once every check has passed. Messages name no
        server path (``public``). ``owner``: the submitter's secret; only it may cancel the job (none: anyone)."""
        return self._submit_owned(request, owner_digest(owner))

    def _submit_owned(self, request: GenerationRequest, owner: str | None) -> str:
        """``submit`` with the owner already as its digest (a re-queued job keeps its owner)."""
        try:
            return self._submit(request, owner)
        except BadInputError as exc:
            raise self._public_error(exc) from None

    def prepare(self, request: GenerationRequest) -> PreparedJob:
        """``Engine.prepare`` (what a run would do, for the page's verdict) with messages fit for any visitor."""
        try:
            return self.engine.prepare(request)
        except BadInputError as exc:
            raise self._public_error(exc) from None

    def public(self, message: str) -> str:
        """A message for people who reach the app over HTTP: no server paths (the log has them)."""
        return without_server_paths(message, self.engine.output_dir)

    def _public_error(self, exc: BadInputError) -> BadInputError:
        if isinstance(exc, (NotEnoughDiskSpaceError, InputNotKeptError, JobNotRecordedError)):
            log.warning("refused a job: %s", exc)  # the machine's trouble: the operator needs the full paths
        return type(exc)(self.public(str(exc)))

    def _submit(self, request: GenerationRequest, owner: str | None) -> str:
        validate_request(request)
        self._refuse_when_full()  # at once, before reading the picture and planning (checked again below)
        if not request.seeds:
            # Fixed now so the page can show the seed while the job waits, and a retry reproduces it.
            request = replace(request, seeds=(secrets.randbelow(MAX_SEED + 1),))
        data = _input_bytes(request.image)
        last = _input_bytes(request.last_image) if request.last_image is not None else None
        # The checks (a last frame the model does not take among them) run on the very bytes that will be kept (the
        # upload may change or vanish meanwhile), and the copies count against the disk reserve like the videos.
        job = self.engine.prepare(replace(request, image=data, last_image=last),
                                  extra_bytes=len(data) + len(last or b""))
        fresh: list[Path] = []  # what this call wrote, removed again if the job is refused after all
        request = replace(request, image=self._keep(data, job.source.source_format, fresh))
        if last is not None:
            request = replace(request, last_image=self._keep(last, job.last_source.source_format, fresh))
        job_id = new_job_id()
        with self._changed:
            waiting = len(self._queue)
            self._refuse_when_full()
            record = JobRecord(id=job_id, state="queued", created_at=time.time(),
                               settings=request_settings(request), image_path=str(request.image), owner=owner)
            try:
                self.store.add(record)
            except STORE_ERRORS as exc:
                for path in fresh:  # a refused request leaves nothing behind
                    path.unlink(missing_ok=True)
                raise JobNotRecordedError(_database_message(exc, "the job was not queued")) from None
            self._queue.append(_LiveJob(job_id, request, record, eta=Eta(self._prior_step_s(job)),
                                        peak_bytes=_predicted_peak(job)))
            self._dispatch.start()
            self._changed.notify_all()
        with job_context(job_id):
            log.info("queued (%d ahead)", waiting + len(self._running))
        return job_id

    def _prior_step_s(self, job: PreparedJob) -> float | None:
        expected = self.expected_seconds(job) if self.expected_seconds else None
        return expected / job.params.steps if expected and job.params.steps else None

    def _refuse_when_full(self) -> None:
        with self._changed:  # re-entrant: a Condition over an RLock
            waiting = len(self._queue)
            if waiting >= self.max_queue:
                raise QueueFullError(
                    f"The app is busy: {waiting} jobs are waiting (the queue holds {self.max_queue}). "
                    "Try again in a few minutes."
                )

    def _keep(self, data: bytes, source_format: str, fresh: list[Path]) -> Path:
        """``_keep_input``, adding what it wrote to ``fresh``; on failure the others in ``fresh`` go too."""
        try:
            kept, written = self._keep_input(data, source_format)
        except InputNotKeptError:
            for path in fresh:
                path.unlink(missing_ok=True)
            raise
        if written:
            fresh.append(kept)
        return kept

    def _keep_input(self, data: bytes, source_format: str) -> tuple[Path, bool]:
        """Copy the checked picture into outputs/inputs/, named by content, so the job and its history entry
        survive the upload's temporary file. The suffix comes from the format Pillow found, never from the
        uploader's file name: a copy named ``.html`` or ``.svg`` would be served as a page of the app's origin.
        Returns the copy and whether this call wrote it."""
        folder = self.engine.output_dir / INPUTS_FOLDER
        suffix = KEPT_SUFFIXES.get(source_format, ".img")
        kept = folder / f"{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
        if kept.exists():
            return kept, False
        # A partial of this call's own: two people sending the same picture at once write under one name, and a
        # shared partial would be renamed away under the second writer ("No such file or directory").
        partial = kept.with_name(f".{kept.name}.{secrets.token_hex(4)}.partial")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            partial.replace(kept)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise InputNotKeptError(str(OutputWriteError.from_os_error(exc, kept, "the uploaded picture"))) from None
        return kept, True

    def requeue(self, job_id: str) -> str:
        """Queue an interrupted job again (same picture, settings and seed) and return the new job's id. The old
        entry stays in the history, so nothing about what happened is lost."""
        record = self.store.get(job_id)
        if record is None:
            raise BadInputError(f"There is no job {job_id!r}; the history lists the jobs this app knows.")
        if record.state != "interrupted":
            raise BadInputError(f"Job {job_id} is {record.state}: only interrupted jobs can be re-queued "
                                "(load its settings and Generate to run it again).")
        again = (record.result or {}).get("requeued_as")
        if again:
            raise BadInputError(f"Job {job_id} was re-queued already, as job {again}.")
        if not record.image_path or not Path(record.image_path).is_file():
            raise BadInputError(f"The picture of job {job_id} is gone from the outputs folder; upload it again.")
        new_id = self._submit_owned(request_from_settings(record.settings, Path(record.image_path)), record.owner)
        self.store.mark_requeued(job_id, new_id)
        with job_context(new_id):
            log.info("re-queued interrupted job %s", job_id)
        return new_id

    def interrupted(self, limit: int = 100) -> list[str]:
        """Ids of interrupted jobs not re-queued yet, oldest first (the order to run them again)."""
        records = self.store.recent(limit, states=("interrupted",))
        return [r.id for r in reversed(records) if not (r.result or {}).get("requeued_as")]

    # -- control and queries -------------------------------------------------------------------------------
    def cancel(self, job_id: str, owner: str | None = None) -> bool:
        """Stop a queued job now or a running one within a denoising step. False when it is not active, or when
        ``owner`` is not the secret it was submitted with (``may_control``)."""
        with self._changed:
            queued = next((live for live in self._queue if live.id == job_id), None)
            running = self._running.get(job_id)
            live = queued or running
            if live is None:
                return False
            if not self._allows(live.record.owner, owner):
                with job_context(job_id):
                    log.warning("cancel refused: asked by someone other than the job's submitter")
                return False
            if queued is not None:
                self._queue.remove(queued)
                self._end(queued, _Outcome("cancelled"))
                self._changed.notify_all()
                with job_context(job_id):
                    log.info("cancelled while queued")
                return True
            running.cancel.cancel()
            with job_context(job_id):
                log.info("cancel requested")
            return True

    def may_control(self, job_id: str, owner: str | None) -> bool:
        """Whether the holder of the secret ``owner`` may steer the job (cancel it, promote its videos, follow it
        as its own): its submitter; anyone for a job without an owner (from before owners were kept) or with
        ``shared_control``. Everyone may see every job."""
        return self._allows(self._owner_of(job_id), owner)

    def _allows(self, job_owner: str | None, owner: str | None) -> bool:
        if self.shared_control or job_owner is None:
            return True
        digest = owner_digest(owner)
        return digest is not None and hmac.compare_digest(job_owner, digest)

    def _owner_of(self, job_id: str) -> str | None:
        with self._changed:
            lives = list(self._running.values()) + list(self._queue)
            lives += [live for live, _outcome in self._unrecorded.values()]
            for live in lives:
                if live.id == job_id:
                    return live.record.owner
        record = self.store.get(job_id)
        return record.owner if record else None

    def status(self, job_id: str) -> JobStatus | None:
        with self._changed:
            if job_id in self._running:
                return self._live_status(self._running[job_id], position=None)
            for position, live in enumerate(self._queue):
                if live.id == job_id:
                    return self._live_status(live, position=position + len(self._running))
            if job_id in self._unrecorded:
                return _ended_status(*self._unrecorded[job_id])
        record = self.store.get(job_id)
        return _stored_status(record) if record else None

    def active(self) -> list[JobStatus]:
        """The running jobs first (in the order they started), then the queue in order."""
        with self._changed:
            lives = list(self._running.values()) + list(self._queue)
        return [status for status in (self.status(live.id) for live in lives) if status is not None]

    def queue_length(self) -> int:
        with self._changed:
            return len(self._queue)

    def history(self, limit: int = 50) -> list[JobStatus]:
        with self._changed:
            unrecorded = dict(self._unrecorded)
        return [_ended_status(*unrecorded[record.id]) if record.id in unrecorded else _stored_status(record)
                for record in self.store.recent(limit)]

    def wait(self, job_id: str, timeout: float | None = None, *, until_change_from: tuple | None = None) -> JobStatus:
        """Block until the job finishes (or, with ``until_change_from``, until its progress differs from that
        fingerprint), or the timeout passes. Returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                status = self.status(job_id)
                if status is None:
                    raise BadInputError(f"There is no job {job_id!r}.")
                if status.finished:
                    return status
                if until_change_from is not None and fingerprint(status) != until_change_from:
                    return status
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return status
                self._changed.wait(remaining)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop taking jobs, cancel the running ones and let the workers end."""
        with self._changed:
            self._stopping = True
            for live in self._running.values():
                live.cancel.cancel()
            self._changed.notify_all()
        self._dispatch.stop(timeout)
        self._next_retry = 0.0
        self._record_unrecorded()
        for job_id, (_live, outcome) in self._unrecorded.items():
            with job_context(job_id):
                log.error("ended %s, but the job database never took it: it shows as interrupted after the next "
                          "start", outcome.state)

    # -- the workers (i2v/workers/dispatch.py calls these) --------------------------------------------------
    def start(self) -> None:
        """Start the workers now (a worker process takes seconds to import its libraries); else at the first job."""
        self._dispatch.start()

    def warm_up(self, request: GenerationRequest) -> None:
        """Load the request's model on every worker, so the first job does not wait for it."""
        self._dispatch.warm_up(request)

    def workers(self) -> list[WorkerInfo]:
        return self._dispatch.infos()

    def resident_models(self) -> list[str]:
        """The models the workers hold in memory now (each once, most held first); empty before the first load."""
        held = [info.resident_model for info in self._dispatch.infos() if info.resident_model]
        return sorted(set(held), key=lambda model: (-held.count(model), model))

    def node_gpus(self) -> list[dict]:
        """``/gpu_status``'s ``nodes``: every box that runs workers for this app (Ray), with its GPUs."""
        return self._dispatch.node_gpus()

    def serving(self) -> bool:
        """Whether the workers take jobs (each worker's thread is alive)."""
        return self._dispatch.serving()

    def job_taken(self, live: _LiveJob, worker: Worker) -> None:
        self._running[live.id] = live
        live.worker = worker

    def job_released(self, live: _LiveJob) -> None:
        if self._running.get(live.id) is live:  # a job queued again after a lost run may be running elsewhere already
            del self._running[live.id]

    def between_jobs(self) -> float | None:
        self._record_unrecorded()
        with self._changed:
            return self.retry_seconds if self._unrecorded else None

    def job_starting(self, live: _LiveJob) -> RunOutcome | None:
        try:
            self.store.mark_running(live.id)
        except STORE_ERRORS as exc:
            log.error("the job database could not be written: %s", exc)
            return RunOutcome("failed", "fatal", _database_message(exc, "the job was not started"))
        live.started_at = time.time()
        live.model_resident = self._model_resident(live)
        self._tell("job_started", live.id)
        return None

    def _model_resident(self, live: _LiveJob) -> bool:
        """Whether the job's model is in its worker's memory, so it has no load to wait for."""
        return live.worker is not None and live.worker.resident_model == live.request.model

    def job_progress(self, live: _LiveJob, event: ProgressEvent) -> None:
        self._on_progress(live, event)

    def job_ended(self, live: _LiveJob, outcome: RunOutcome, worker: Worker, seconds: float) -> None:
        if outcome.state == "lost":
            state, kind = self._after_lost_worker(live, outcome)
        else:
            ended = _Outcome(outcome.state, outcome.kind, outcome.message, _noted(outcome.summary, live))
            self._end(live, ended)  # before the worker lets go of the job: status() must always find it
            state, kind = ended.state, ended.kind
        self._tell("job_finished", live.id, state, kind=kind, result=outcome.result, seconds=seconds)

    def _after_lost_worker(self, live: _LiveJob, outcome: RunOutcome) -> tuple[str, str | None]:
        """The job's worker died, hung or broke under it: sweep what it wrote, then queue the job again at the head
        of the queue under the same id (the page, ``/generate`` and API callers follow that id), once. A job that
        ran twice, was cancelled meanwhile or meets a stopping app ends here. Returns (state, kind) for listeners."""
        swept = self._sweep_files_of(live.id)
        log.warning("%s; %d file(s) it left removed", outcome.message, swept)
        reason = self.public(outcome.message or "The worker process stopped.")
        if live.cancel.cancelled:
            self._end(live, _Outcome("cancelled"))
            return "cancelled", None
        if live.first_run_lost is not None or self._stopping:
            again = " It was the job's second run: the first was lost too." if live.first_run_lost else ""
            self._end(live, _Outcome("failed", "fatal", f"{reason}{again} Nothing was saved; the log has details "
                                     f"under job {live.id}."))
            return "failed", "fatal"
        try:
            self.store.mark_queued_again(live.id)
        except STORE_ERRORS as exc:
            self._end(live, _Outcome("failed", "fatal", _database_message(exc, "the job was not queued again")))
            return "failed", "fatal"
        with self._changed:
            self._queue.appendleft(_LiveJob(live.id, live.request, live.record, first_run_lost=reason))
            self._changed.notify_all()
        log.warning("queued again, first in line, to run once more from the start")
        return "interrupted", "interrupted"

    def _end(self, live: _LiveJob, outcome: _Outcome) -> None:
        """Record how the job ended. When the database refuses (a full disk), the outcome stays in memory, where
        ``status`` finds it, and the worker writes it again every ``retry_seconds`` until it is taken."""
        try:
            outcome.write(self.store, live.id)
        except STORE_ERRORS as exc:
            log.error("ended %s, but the job database could not record it (%s): kept in memory, retried every "
                      "%g s", outcome.state, exc, self.retry_seconds)
            with self._changed:
                self._unrecorded[live.id] = (live, outcome)
                self._next_retry = time.monotonic() + self.retry_seconds
                self._changed.notify_all()

    def _record_unrecorded(self) -> None:
        """Write the outcomes the database refused, oldest first, once the retry time has come."""
        with self._changed:
            pending = list(self._unrecorded.items())
        if not pending or time.monotonic() < self._next_retry:
            return
        for job_id, (_live, outcome) in pending:
            try:
                outcome.write(self.store, job_id)
            except STORE_ERRORS:
                self._next_retry = time.monotonic() + self.retry_seconds
                return
            with self._changed:
                del self._unrecorded[job_id]
            with job_context(job_id):
                log.warning("the job database has recorded now that this job ended %s", outcome.state)

    def _tell(self, event: str, *args, **kwargs) -> None:
        try:
            getattr(self.listener, event)(*args, **kwargs)
        except Exception:  # noqa: BLE001 - see JobListener
            log.exception("the job listener failed on %s", event)

    def _on_progress(self, live: _LiveJob, event: ProgressEvent) -> None:
        with self._changed:
            live.progress = event
            live.eta.observe(event, time.monotonic())
            if event.preview is not None:
                live.preview = event.preview
                self._previews[live.id] = event.preview
                while len(self._previews) > KEPT_PREVIEWS:
                    self._previews.pop(next(iter(self._previews)))
            self._changed.notify_all()

    def latest_preview(self, job_id: str) -> Preview | None:
        """The newest live preview of a running job (or of one of the last few jobs); None before the first."""
        with self._changed:
            return self._previews.get(job_id)

    def _live_status(self, live: _LiveJob, position: int | None) -> JobStatus:
        record = live.record
        running = self._running.get(live.id) is live
        return JobStatus(
            id=live.id, state="running" if running else "queued", settings=record.settings,
            created_at=record.created_at, position=position,
            progress=live.progress.to_dict() if live.progress else None,
            eta_s=live.eta.remaining(time.monotonic()) if running else None, image_path=record.image_path,
            started_at=live.started_at, model_resident=live.model_resident if running else None,
            cancel_requested=running and live.cancel.cancelled,
        )


def fingerprint(status: JobStatus) -> tuple:
    """Changes whenever a page would show something new about the job."""
    progress = status.progress or {}
    return (status.state, status.position, progress.get("stage"), progress.get("candidate"), progress.get("step"),
            progress.get("preview_step"))


def _predicted_peak(job: PreparedJob) -> int | None:
    estimate = job.decision.estimate if job.decision is not None else None
    return estimate.peak_bytes if estimate is not None else None


def _noted(summary: dict[str, Any] | None, live: _LiveJob) -> dict[str, Any] | None:
    """The summary of a job that ran twice says so among its notices (what the app did on the user's behalf)."""
    if summary is None or live.first_run_lost is None:
        return summary
    notice = {"code": "worker.job_ran_again", "message": f"The first run of this job was lost: {live.first_run_lost} "
              "It ran again from the start, with the same settings and seed.", "hint": ""}
    return {**summary, "notices": [*summary.get("notices", []), notice]}




def _ended_status(live: _LiveJob, outcome: _Outcome) -> JobStatus:
    record = live.record
    return JobStatus(
        id=live.id, state=outcome.state, settings=record.settings, created_at=record.created_at,
        result=outcome.summary, error_kind=outcome.kind, error_message=outcome.message, image_path=record.image_path,
        started_at=live.started_at, finished_at=outcome.finished_at,
    )


def _database_message(exc: Exception, what: str) -> str:
    return (f"The job database could not be written ({exc}), so {what}. Free some space on the disk of the "
            "outputs folder, then try again.")


def _stored_status(record: JobRecord) -> JobStatus:
    return JobStatus(
        id=record.id, state=record.state, settings=record.settings, created_at=record.created_at,
        result=record.result, error_kind=record.error_kind, error_message=record.error_message,
        image_path=record.image_path, started_at=record.started_at, finished_at=record.finished_at,
    )


def _input_bytes(image: Any) -> bytes:
    """The picture as the bytes of a file: what is checked, hashed and kept."""
    if isinstance(image, Image.Image):
        return _png_bytes(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    source = Path(image)
    if not source.is_file():
        raise BadInputError(f"The image file {source.name!r} does not exist; upload it again.")
    check_file_size(source.stat().st_size)  # before reading: the size limit is about memory too
    return source.read_bytes()


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

