"""I2V Studio web app: ``python app.py [--port 7860] [--model tiny] …`` (settings: README "Configuration").

Only translates settings into the server in ``i2v/web``; the model stack is imported when the first job (or the
background warm-up) needs it, so the page answers within seconds of start.
"""
from __future__ import annotations

import logging
import sys
import threading

from i2v.logs import configure_logging
from i2v.settings import load_settings

log = logging.getLogger("i2v.app")


def warm_up(app) -> None:
    """Load the model in the background so the first Generate does not wait for it."""
    from i2v.errors import I2VError
    from i2v.web.ui import placeholder_request

    try:
        report = app.jobs.engine.load(placeholder_request(app.model))
        log.info("model %s ready (%s)", app.model, report.to_dict().get("source", "loaded"))
    except I2VError as exc:
        log.error("the model could not be loaded yet: %s", exc)


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(argv)
    configure_logging()
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
    uvicorn.run(app.fastapi, host=settings.host, port=settings.port, log_level="warning",
                timeout_graceful_shutdown=5)  # open tabs keep connections alive; do not wait for them forever
    app.jobs.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
