"""The web face of the app: which models the page and the API offer, the page (layout in ``page.py``, events in
``events.py``) and the named endpoints scripts call (``/generate``, ``/requeue``)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
from PIL import Image

from i2v.backends.catalog import ModelOption
from i2v.engine.presets import DEFAULT_PRESET, Preset, presets_for_model
from i2v.engine.request import GenerationRequest
from i2v.errors import BadInputError
from i2v.guidance.prompt_lint import KeywordLibrary
from i2v.service.jobs import JobManager, fingerprint
from i2v.web.api_defaults import trailing_defaults
from i2v.web.events import PageEvents
from i2v.web.forms import RANDOM_SEED, FormValues, to_request, uploaded_image
from i2v.web.page import Page


VALUES_BEFORE_FRAMING = 16  # /generate's values up to loras; framing, crop_x and crop_y came after


class Studio:
    def __init__(self, jobs: JobManager, *, models: dict[str, ModelOption], presets: dict[str, Preset],
                 keywords: KeywordLibrary, gpu_panel_html: str, runs_on: str, expected_seconds=None):
        self.jobs = jobs
        self.engine = jobs.engine
        self.models = models  # offered on the page and the API; the first is the configured one
        self.model = next(iter(models))
        self.presets = presets
        self.keywords = keywords
        self.gpu_panel_html = gpu_panel_html
        self.runs_on = runs_on
        self.expected_seconds = expected_seconds  # (PreparedJob) -> float | None

    def option(self, name: str | None) -> ModelOption:
        """The offered model ``name`` (the configured one when empty). Anything else is refused: the page and the
        API must not make the server load arbitrary folders or hub ids."""
        if not name:
            return self.models[self.model]
        if name not in self.models:
            raise BadInputError(f"Model '{name}' is not offered by this app; choose one of: "
                                f"{', '.join(self.models)}.")
        return self.models[name]

    def presets_for(self, model: str | None) -> dict[str, Preset]:
        return presets_for_model(self.presets, self.option(model).spec.preset_key)

    def still_offered(self, model: str | None) -> str:
        """A past job's model if the page still offers it, else the configured one."""
        return model if model in self.models else self.model

    def build(self) -> gr.Blocks:
        with gr.Blocks(title="I2V Studio", analytics_enabled=False) as demo:
            page = Page(self.models, self.presets_for(None), self.keywords, self.gpu_panel_html, self.runs_on)
            PageEvents(self, page).wire(demo)
            self._api(demo)
        return demo

    def _api(self, demo: gr.Blocks) -> None:
        """``/generate`` for scripts (gradio_client): image and prompt; everything else has a default
        (0 for resolution, frames, steps, guidance or fps = the preset's value; no last_image; audio: the sound track of
        a model that makes one; no LoRAs; framing "crop" at the centre, crop_x = crop_y = 0.5)."""
        with gr.Column(visible=False):
            inputs = [
                uploaded_image(label="image"),
                gr.Textbox(label="prompt"),
                gr.Textbox("", label="negative_prompt"),
                gr.Dropdown(list(self.presets), value=DEFAULT_PRESET, label="preset"),
                gr.Number(0, label="resolution"),
                gr.Number(0, label="frames"),
                gr.Number(0, label="steps"),
                gr.Number(0, label="guidance"),
                gr.Number(0, label="fps"),
                gr.Number(RANDOM_SEED, label="seed"),
                gr.Number(1, label="candidates"),
                gr.Checkbox(False, label="auto_enhance"),
                # Custom values reach Studio.option, whose refusal lists what is offered (Gradio's does not).
                gr.Dropdown(list(self.models), value=self.model, label="model", allow_custom_value=True),
                # Optional; refused (with the models that take one) for a model without a last frame.
                uploaded_image(label="last_image"),
                # Last, with a default, so existing scripts' positional calls keep their meaning.
                gr.Checkbox(True, label="audio"),
                # Any JSON a script finds natural: [{"source": "style.safetensors", "strength": 0.8}], [["style", 0.8]]
                # or ["style.safetensors:0.8"]; null or "" for none (lora_choices). Refused for a model without LoRAs.
                gr.JSON(None, label="loras"),
                # Also last, with defaults (the engine's), for the same reason: "crop" at the centre, or "pad".
                gr.Dropdown(["crop", "pad"], value="crop", label="framing", allow_custom_value=True),
                gr.Number(0.5, label="crop_x"),
                gr.Number(0.5, label="crop_y"),
            ]
            outputs = [gr.Video(label="video"), gr.File(label="files", file_count="multiple"),
                       gr.JSON(label="result")]
            trigger = gr.Button(visible=False)
        # A raw REST client written before framing came sends the first 16 values: the newer ones take defaults.
        trailing_defaults(demo, "generate", [component.value for component in inputs], required=VALUES_BEFORE_FRAMING)
        trigger.click(self.api_generate, inputs, outputs, api_name="generate",
                      concurrency_limit=self.jobs.max_queue + 2,
                      api_description="Make a video from an image and a prompt; returns the first video, every "
                                      "video with its JSON record, and the result (seeds, parameters, notices).")
        with gr.Column(visible=False):
            requeue_id = gr.Textbox("", label="job_id")
            requeued = gr.JSON(label="requeued")
            requeue_trigger = gr.Button(visible=False)
        requeue_trigger.click(self.api_requeue, requeue_id, requeued, api_name="requeue", concurrency_limit=1,
                              api_description="Queue interrupted jobs again: one job id, or empty for all. Returns "
                                              "{old id: new id} and any errors.")

    # -- the scripts' endpoints ---------------------------------------------------------------------------
    def api_generate(self, image, prompt, negative_prompt, preset, resolution, frames, steps, guidance, fps, seed,
                     candidates, auto_enhance, model=None, last_image=None, audio=True, loras=None,
                     framing="crop", crop_x=0.5, crop_y=0.5, progress=gr.Progress(), request: gr.Request = None):
        """The job belongs to the calling Gradio session (gradio_client: one per ``Client``): no page can cancel
        or promote it."""
        from_preset = [None if value in (0, None) else value for value in (resolution, frames, steps, guidance, fps)]
        form = FormValues(image, prompt, negative_prompt, preset, *from_preset, seed, candidates, auto_enhance, model,
                          last_image, audio, loras, framing=framing, crop_x=crop_x, crop_y=crop_y)
        try:
            job_id = self.jobs.submit(to_request(form, self.option(model).name, allow_missing=True),
                                      owner=getattr(request, "session_hash", None))
        except BadInputError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        status = self.jobs.status(job_id)
        while not status.finished:
            if status.progress:
                progress(status.progress["fraction"], desc=f"{status.progress['stage']} ({job_id})")
            elif status.position:
                progress(0.0, desc=f"queued: {status.position} ahead ({job_id})")
            status = self.jobs.wait(job_id, timeout=5, until_change_from=fingerprint(status))
        if status.state != "done":
            message = status.error_message or f"The job ended: {status.state}."
            raise gr.Error(f"Job {job_id} {status.state}: {message}", print_exception=False)
        videos = status.result["videos"]
        files = [path for video in videos for path in (video["path"], video["sidecar"])]
        # Gradio turns any dict with a "path" key into a file download, so the result names files instead.
        described = [{"seed": v["seed"], "video": Path(v["path"]).name, "record": Path(v["sidecar"]).name}
                     for v in videos]
        return videos[0]["path"], files, {"job_id": job_id, **status.result, "videos": described}

    def requeue_all(self) -> tuple[dict[str, str], list[str]]:
        """{interrupted id: new id} and the messages of those that could not go back."""
        requeued, errors = {}, []
        for old_id in self.jobs.interrupted():
            try:
                requeued[old_id] = self.jobs.requeue(old_id)
            except BadInputError as exc:  # a full queue or a lost picture: the others may still go
                errors.append(str(exc))
        return requeued, errors

    def api_requeue(self, job_id: str):
        """``/requeue`` for scripts and ``python -m i2v requeue``: one interrupted job, or all when empty."""
        if (job_id or "").strip():
            try:
                return {"requeued": {job_id: self.jobs.requeue(job_id.strip())}, "errors": []}
            except BadInputError as exc:
                raise gr.Error(str(exc), print_exception=False) from None
        requeued, errors = self.requeue_all()
        return {"requeued": requeued, "errors": errors}


def placeholder_request(model: str) -> GenerationRequest:
    """A request for warming the model up before the first job."""
    return GenerationRequest(image=Image.new("RGB", (512, 512), (128, 128, 128)), prompt="warm-up", model=model)
