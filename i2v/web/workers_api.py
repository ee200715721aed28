"""``GET /api/workers``: every worker with its node, GPU, PID, resident model, state, job and restarts (the README's
"Workers" section has the schema)."""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse


def add_worker_routes(api: FastAPI, jobs) -> None:
    @api.get("/api/workers")
    def workers() -> JSONResponse:
        listed = [info.to_dict() for info in jobs.workers()]
        return JSONResponse({"workers": listed, "queue": jobs.queue_length()}, headers={"Cache-Control": "no-store"})
