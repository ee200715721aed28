"""Raw REST callers of ``/generate`` (``POST /gradio_api/call/generate`` with a ``data`` list) pass every value by
position. New values are added at the end with defaults; Gradio itself refuses a call with fewer values than inputs
("didn't receive enough input values"), so a client written before an addition would break. Here the values a
call leaves off the end take their defaults, as they do for ``gradio_client`` users."""
from __future__ import annotations

from typing import Any

import gradio as gr


def trailing_defaults(blocks: gr.Blocks, api_name: str, defaults: list[Any], required: int) -> None:
    """For the endpoint ``api_name``: a call with at least ``required`` values (what clients sent before the newest
    were added) gets ``defaults[i]`` for each input ``i`` it left off the end. Fewer is refused as before
    (``plain_errors`` words it): a call of 3 values is a mistake, not an old client."""
    original = blocks.validate_inputs

    def validate_inputs(block_fn, inputs: list[Any]):
        if getattr(block_fn, "api_name", None) == api_name and required <= len(inputs) < len(defaults):
            inputs.extend(defaults[len(inputs):])  # Gradio goes on with this same list
        return original(block_fn, inputs)

    blocks.validate_inputs = validate_inputs  # Gradio calls self.validate_inputs(...): the instance's wins
