"""I2V Studio web app: ``python app.py [--port 7860] [--model tiny] …`` (settings: README "Configuration").

Only translates settings into the server in ``i2v/web``; the model stack is imported when the first job (or the
background warm-up) needs it, so the page answers within seconds of start.
"""
from __future__ import annotations

import logging
import sys
import threading

from i2v.logs import configure_logging, new_run_log
from i2v.settings import AppSettings, load_settings

log = logging.getLogger("i2v.app")


def warm_up(app) -> None:
    """Load the model on every worker in the background so the first Generate does not wait for it (a worker
    process loads it in its own process: the app's never touches CUDA)."""
    from i2v.web.ui import placeholder_request

    app.jobs.warm_up(placeholder_request(app.model))


def set_up_logging(settings: AppSettings) -> None:
    """One configuration: the run's rotating log file (unless log files are off) and, if wanted, the terminal."""
    log_file = new_run_log(settings.logs, keep=settings.keep_logs) if settings.logs is not None else None
    stream = sys.stderr if settings.console_log or log_file is None else None  # never log into the void
    configure_logging(log_file=log_file, stream=stream, max_bytes=settings.log_max_mb * 2**20)
    if log_file is not None:
        log.info("logging to %s (rotates at %d MB)", log_file, settings.log_max_mb)


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(argv)
    set_up_logging(settings)
    import uvicorn

    from i2v.web.server import create_app

    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.auth is None:
        log.warning("listening on %s without I2V_AUTH: anyone who can reach this machine can use the app",
                    settings.host)
    from i2v.errors import I2VError

    try:
        app = create_app(settings)
    except I2VError as exc:  # bad --model, broken preset file…: one line that says what to fix
        log.error("cannot start: %s", exc)
        return 2
    log.info("I2V Studio: model %s, outputs in %s, open http://%s:%d/", app.model, settings.outputs,
             settings.host, settings.port)
    threading.Thread(target=warm_up, args=(app,), name="i2v-warm-up", daemon=True).start()
    # open tabs keep connections alive; do not wait for them forever
    config = uvicorn.Config(app.fastapi, host=settings.host, port=settings.port, log_level="warning",
                            timeout_graceful_shutdown=5)
    app.server = uvicorn.Server(config)
    app.idle.start()
    app.server.run()
    app.idle.stop()
    app.close()
    if app.stopped_for_idle:
        log.warning("stopped after %g idle minutes (uptime %.0f s)", settings.idle_stop_minutes,
                    app.uptime_seconds())
        if settings.idle_command:
            from i2v.service.idle import run_idle_command

            run_idle_command(settings.idle_command)
    else:
        log.info("stopped (uptime %.0f s)", app.uptime_seconds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
