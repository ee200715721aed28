"""The framing controls beside the preprocessed image (how the picture meets the video's aspect:
``guidance/framing.py``): crop at a chosen position, or the whole picture on black bars. Layout and handlers, as
``lora_picker.py`` keeps the LoRA picker's."""
from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.blocks import Block

CENTRE = (0.5, 0.5)


def framing_controls(page: Any, framing: str = "crop", focus: tuple[float, float] = (0.5, 0.5)) -> None:
    """How the picture meets the video's aspect (guidance/framing.py): crop, at a chosen position, or pad. The
    position sliders show for a crop only."""
    page.framing = gr.Radio([("Crop to fill the frame", "crop"), ("Whole picture on black bars", "pad")],
                            value=framing, label="Framing, when the picture's shape is not the video's",
                            elem_id="framing")
    with gr.Row():
        page.crop_x = gr.Slider(0, 1, value=focus[0], step=0.05, label="Part kept: across (0 left … 1 right)",
                                elem_id="crop-x", visible=framing == "crop")
        page.crop_y = gr.Slider(0, 1, value=focus[1], step=0.05, label="Part kept: down (0 top … 1 bottom)",
                                elem_id="crop-y", visible=framing == "crop")


class FramingEvents:
    """Mixed into ``events.PageEvents``: the framing radio shows the crop position for a crop only."""

    page: Any  # page.Page: framing, crop_x, crop_y

    def choose_framing(self, framing: str) -> dict[Block, Any]:
        return self.framing_shown(framing, CENTRE)

    def framing_shown(self, framing: str | None, focus) -> dict[Block, Any]:
        """The framing and the crop position; the position sliders show for a crop only (a padded picture keeps
        all of it, and the engine refuses a position with padding rather than ignore it)."""
        crop = (framing or "crop") == "crop"
        x, y = tuple(focus or CENTRE) if crop else CENTRE
        return {self.page.framing: framing or "crop", self.page.crop_x: gr.Slider(value=x, visible=crop),
                self.page.crop_y: gr.Slider(value=y, visible=crop)}
