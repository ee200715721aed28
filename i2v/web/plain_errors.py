"""Errors a caller sees are ours: one sentence that says what was wrong and what to do.

Before a handler runs, Gradio checks and converts the values sent (``Blocks.preprocess_data``). Its refusals came
back verbatim: pydantic's "1 validation error for ImageData … input_type=str … https://errors.pydantic.dev/…",
"An event handler (api_generate) didn't receive enough input values … [<gradio.components.image.Image object
at 0x7f…>, …]", "Cannot move /etc/passwd to the gradio cache dir …" (for a blocked file: the job database's path).
``plain_input_errors`` puts our sentence in their place; the log keeps Gradio's. The app is also mounted with
``show_error=False`` (server.py), so any other unexpected exception reaches the caller as a bare "error" rather
than its text; ``gr.Error`` messages (ours, and Gradio's own list of choices) still show.
"""
from __future__ import annotations

import logging

import gradio as gr
from gradio.exceptions import InvalidPathError

log = logging.getLogger(__name__)


def plain_input_errors(blocks: gr.Blocks) -> None:
    """Make ``blocks`` answer a malformed request with our sentence instead of Gradio's or pydantic's."""
    original = blocks.preprocess_data

    async def preprocess_data(block_fn, inputs, state, explicit_call=False):
        try:
            return await original(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as exc:  # Gradio's and pydantic's refusals of a request: said in our words, never a crash
            log.info("refused the values sent to %s: %s", _endpoint(block_fn), " ".join(str(exc).split())[:500])
            raise gr.Error(input_problem(block_fn, inputs, exc), print_exception=False) from None

    blocks.preprocess_data = preprocess_data  # Gradio calls self.preprocess_data(...): the instance's wins


def input_problem(block_fn, inputs: list, exc: Exception) -> str:
    endpoint = _endpoint(block_fn)
    labels = [getattr(block, "label", None) or type(block).__name__ for block in block_fn.inputs]
    if len(inputs) < len(labels):
        return (f"{endpoint} takes {len(labels)} values ({', '.join(labels)}); {len(inputs)} were sent. "
                "/gradio_api/info describes each one.")
    if isinstance(exc, InvalidPathError):
        return (f"A file given to {endpoint} was not uploaded to this app. Send the image as an uploaded file: "
                "handle_file(path) in gradio_client, or POST it to /gradio_api/upload and pass the path it returns.")
    return (f"A value sent to {endpoint} has the wrong type: the image must be an uploaded file (handle_file(path) "
            "in gradio_client), texts are strings, numbers are numbers and switches are true or false. "
            "/gradio_api/info describes each one.")


def _endpoint(block_fn) -> str:
    name = getattr(block_fn, "api_name", None)
    return f"/{name.lstrip('/')}" if isinstance(name, str) and name else "this action"
