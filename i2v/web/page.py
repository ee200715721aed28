"""The page's layout: every component the user sees, and the state and timer its events keep, as named attributes.
Handlers (``events.py``) answer with ``{page.status: …, page.timer: …}``, so adding a control adds an attribute and
shifts nothing. Layout only: no handler and no engine call here."""
from __future__ import annotations

from dataclasses import fields
from typing import Any

import gradio as gr
from gradio.blocks import Block

from i2v.backends.catalog import ModelOption
from i2v.engine.presets import DEFAULT_PRESET, Preset
from i2v.guidance.prompt_lint import KeywordLibrary
from i2v.web import render
from i2v.web.forms import RANDOM_SEED, FormValues, preset_values, uploaded_image
from i2v.web.framing_picker import framing_controls
from i2v.web.lora_picker import LoraPicker
from i2v.web.queue_panel import QueuePanel
from i2v.web.workers_panel import WorkersPanel
from i2v.web.model_choice import banner_html, frames_info, preset_choices, resolution_choices

SLOTS = 4  # candidates shown side by side (a request may ask for up to this many from the page)
POLL_SECONDS = 1.0
HISTORY_POLL_SECONDS = 3.0  # runs finished in other tabs or by scripts appear without Refresh
SELECT_A_RUN = "Select a past run to see it and load its settings."

Updates = dict[Block, Any]  # what an event handler returns: only the blocks it names change


class Slot:
    """One candidate: its video, caption and downloads, and the buttons that iterate on it."""

    def __init__(self, index: int):
        with gr.Column(visible=False, min_width=220, elem_classes=["candidate"]) as self.column:
            self.video = gr.Video(label=f"Candidate {index + 1}", interactive=False, autoplay=True, loop=True,
                                  elem_id=f"video-{index}")
            self.caption = gr.Markdown(elem_id=f"caption-{index}")
            self.files = gr.File(label="Download video and its record", file_count="multiple", interactive=False,
                                 elem_id=f"files-{index}")
            with gr.Row():
                self.use_seed = gr.Button("Use this seed", size="sm", elem_id=f"use-seed-{index}")
                self.promote = gr.Button("Promote ↑", size="sm", elem_id=f"promote-{index}")

    def outputs(self) -> list[Block]:
        return [self.column, self.video, self.caption, self.files, self.promote]

    def show(self, video: dict, params: dict, *, can_promote: bool) -> Updates:
        return {self.column: gr.Column(visible=True), self.video: video["path"],
                self.caption: render.video_caption(video, params), self.files: [video["path"], video["sidecar"]],
                self.promote: gr.Button(visible=can_promote)}

    def hide(self) -> Updates:
        return {self.column: gr.Column(visible=False), self.video: None, self.caption: "", self.files: None,
                self.promote: gr.Button(visible=False)}


class Page:
    """Built inside ``gr.Blocks``. The settings controls are named like ``FormValues``' fields (``controls()``)."""

    def __init__(self, models: dict[str, ModelOption], presets: dict[str, Preset], keywords: KeywordLibrary,
                 gpu_panel_html: str, runs_on: str):
        """``models``: what the Model menu offers, the configured one first; ``presets``: that one's tiers."""
        first = next(iter(models.values()))
        self.banner = gr.HTML(banner_html(first, runs_on), elem_id="model-banner")
        gr.HTML(gpu_panel_html, elem_id="gpu-panel-box")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                self._request(models, first, keywords)
                self._parameters(first, presets)
                self.verdict = gr.HTML(elem_id="plan-verdict")
                with gr.Row():
                    self.generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                    # Clickable only while this page's own job waits or runs (progress_panel.cancel_button).
                    self.cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel", interactive=False)
                # Right under Generate, on a desktop and a phone alike: status, bar, time left, live preview.
                self.status = gr.HTML(render.status_html(None), elem_id="job-status")
            with gr.Column(scale=6):
                with gr.Row():
                    self.slots = [Slot(index) for index in range(SLOTS)]
                self.findings = gr.HTML(elem_id="job-findings")
                self.queue = QueuePanel()
                self.workers = WorkersPanel()
        self._history()
        self.job_id = gr.State(None)
        self.browser_job = gr.BrowserState(None, storage_key="i2v-studio-job")
        # This browser's secret, made at its first visit: the jobs it submits are its own to cancel and promote
        # (the job database keeps only a SHA-256 of it). Job ids are public; this is not.
        self.owner_token = gr.BrowserState(None, storage_key="i2v-studio-owner")
        self.shown = gr.State(None)  # the job whose videos are on screen: {"id", "videos", "settings", "image"}
        self.history_ids = gr.State([])
        self.timer = gr.Timer(POLL_SECONDS, active=False)

    def _request(self, models: dict[str, ModelOption], first: ModelOption, keywords: KeywordLibrary) -> None:
        """Model, picture and prompt, with what the app says about the picture and the prompt."""
        self.model = gr.Dropdown([(o.label, o.name) for o in models.values()], value=first.name, label="Model",
                                 elem_id="model", interactive=len(models) > 1,
                                 info="Presets and limits follow the model; one model is in memory at a time, so "
                                      "a switch reloads.")
        self.image = uploaded_image(label="Image", sources=["upload", "clipboard"], elem_id="input-image",
                                    height=300)
        # Shown only for a model that takes a last frame (spec.takes_last_image); the column is what is hidden,
        # since the upload control itself must only ever be sent values (forms.uploaded_image).
        with gr.Column(visible=first.spec.takes_last_image, elem_id="last-image-box") as self.last_image_box:
            self.last_image = uploaded_image(label="Last frame (optional): the video ends on this picture",
                                             sources=["upload", "clipboard"], elem_id="last-image", height=200)
        self.image_report = gr.HTML(elem_id="image-report")
        with gr.Accordion("Preprocessed image (what the model sees) and framing", open=False, elem_id="framing-box"):
            self.preview = gr.Image(label="Model input", interactive=False, elem_id="preview-image", height=240)
            framing_controls(self)
        self.prompt = gr.Textbox(label="Prompt", lines=3, elem_id="prompt",
                                 placeholder="subject + concrete action + direction/speed + environment, "
                                             "e.g. “a sailboat drifting slowly to the left, waves rippling”")
        self.lint = gr.HTML(elem_id="prompt-lint")
        with gr.Accordion(f"Motion keywords ({len(keywords.keywords)}): click one to add it to the prompt",
                          open=False, elem_id="keywords"):
            self.chips = [gr.Dataset(label=label, components=[gr.Textbox(visible=False)],
                                     samples=[[word] for word in words], samples_per_page=len(words),
                                     elem_classes=["keyword-chips"])
                          for label, words in keywords.categories.values()]

    def _parameters(self, first: ModelOption, presets: dict[str, Preset]) -> None:
        """The preset and, under Advanced, the numbers it fills in."""
        spec = first.spec
        resolution, frames, steps, guidance, fps = preset_values(presets[DEFAULT_PRESET])
        self.preset = gr.Radio(preset_choices(presets), value=DEFAULT_PRESET, label="Preset", elem_id="preset")
        with gr.Accordion("Advanced", open=False, elem_id="advanced"):
            self.negative_prompt = gr.Textbox(label="Negative prompt", lines=2, elem_id="negative-prompt",
                                              placeholder="what to avoid, e.g. “blurry, distorted, flickering”")
            with gr.Row():
                self.resolution = gr.Dropdown(resolution_choices(spec), value=resolution, label="Resolution",
                                              elem_id="resolution")
                self.frames = gr.Slider(spec.min_frames, spec.max_frames, value=frames, step=spec.frame_rule.step,
                                        label="Frames", elem_id="frames",
                                        info=f"Frame counts this model takes: {frames_info(spec)}")
            with gr.Row():
                self.steps = gr.Slider(*spec.steps_range, value=steps, step=1, label="Steps", elem_id="steps")
                self.guidance = gr.Slider(*spec.guidance_range, value=guidance, step=0.5, label="Guidance (CFG)",
                                          elem_id="guidance")
            with gr.Row():
                self.fps = gr.Slider(*spec.fps_range, value=fps, step=1, label="Frames per second", elem_id="fps")
                self.candidates = gr.Slider(1, SLOTS, value=1, step=1, label="Candidates (different seeds)",
                                            elem_id="candidates")
            with gr.Row():
                self.seed = gr.Number(RANDOM_SEED, precision=0, label="Seed (-1 = random)", elem_id="seed")
                self.auto_enhance = gr.Checkbox(False, label="Auto-enhance (contrast ×1.2, sharpness ×1.1)",
                                                elem_id="auto-enhance")
                self.audio = audio_checkbox(spec, True)
            loras = LoraPicker(spec.takes_loras)
            self.traps = gr.HTML(elem_id="param-traps")
        self.lora_box, self.loras, self.lora_names = loras.box, loras.menu, loras.names_shown
        self.lora_strengths = loras.strengths
        # Named like FormValues' fields (lora_strength_1 …), so controls() finds them as it finds every control.
        for slot, slider in enumerate(loras.strengths, start=1):
            setattr(self, f"lora_strength_{slot}", slider)

    def _history(self) -> None:
        self.selected = gr.State(None)  # the past run selected in the gallery
        with gr.Accordion("History (kept across restarts)", open=True, elem_id="history"):
            self.gallery = gr.Gallery(label="Past runs", columns=8, height="auto", object_fit="contain",
                                      allow_preview=False, elem_id="history-gallery")
            with gr.Row():
                self.history_detail = gr.HTML(SELECT_A_RUN, elem_id="history-detail")
                self.load_button = gr.Button("Load these settings", interactive=False, elem_id="load-settings")
                self.refresh_button = gr.Button("Refresh", elem_id="refresh-history", size="sm")
                self.requeue_button = gr.Button("Re-queue interrupted jobs", visible=False, elem_id="requeue",
                                                size="sm")
            self.history_table = gr.HTML(elem_id="history-table")
        self.history_timer = gr.Timer(HISTORY_POLL_SECONDS)
        self.history_shown = gr.State(None)  # [[job id, state], …] of the runs on screen: redraw only on a change

    # -- groups the events read and write ----------------------------------------------------------------------
    def controls(self) -> list[Block]:
        """The settings controls in ``FormValues`` order: the inputs of every event that reads the form."""
        return [getattr(self, field.name) for field in fields(FormValues)]

    def numbers(self) -> list[Block]:
        """The controls a preset fills in (``control_updates`` names them)."""
        return [self.resolution, self.frames, self.steps, self.guidance, self.fps]

    def named(self, values: dict[str, Any]) -> Updates:
        """``{"frames": 16}`` → ``{page.frames: 16}``: for helpers that name controls as ``FormValues`` does."""
        return {getattr(self, name): value for name, value in values.items()}

    def slot_outputs(self) -> list[Block]:
        return [component for slot in self.slots for component in slot.outputs()]

    def on_screen(self) -> list[Block]:
        """What shows a job's outcome: the candidates, what the app changed, and the job they belong to."""
        return [*self.slot_outputs(), self.findings, self.shown]

    def history_outputs(self) -> list[Block]:
        """The history, and the selection in it (a redrawn gallery shows none)."""
        return [self.gallery, self.history_ids, self.history_table, self.requeue_button, self.history_shown,
                self.selected, self.history_detail, self.load_button]


def audio_checkbox(spec, value: bool) -> gr.Checkbox:
    """The sound switch, shown only for a model that makes sound (LTX-2)."""
    return gr.Checkbox(value, label="Sound (an AAC track in the mp4)", visible=spec.has_audio, elem_id="audio")
