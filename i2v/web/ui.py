"""The Gradio page: layout and wiring only. Every action is a short call into the engine (``prepare`` for the
verdict, ``lint_prompt`` as the user types, ``JobManager`` for jobs); rendering lives in ``render.py``.

Jobs belong to the server: the page keeps only the id of its last job (in the browser's local storage) and asks
the ``JobManager`` for its state once a second while it is active, so a reload or a dropped connection shows
the same job where it is.
"""
from __future__ import annotations

import html

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from i2v.errors import BadInputError
from i2v.service.jobs import JobManager, JobStatus, fingerprint, request_from_settings
from i2v.backends.catalog import ModelOption
from i2v.engine.presets import DEFAULT_PRESET, Preset, presets_for_model
from i2v.guidance.prompt_lint import KeywordLibrary, lint_prompt
from i2v.engine.request import GenerationRequest
from i2v.web import render
from i2v.web.forms import RANDOM_SEED, FormValues, next_tier, preset_values, to_request, uploaded_image
from i2v.web.model_choice import banner_html, control_updates, frames_info, preset_choices, resolution_choices

log = logging.getLogger(__name__)

SLOTS = 4  # candidates shown side by side (a request may ask for up to this many from the page)
HISTORY_SIZE = 40
HISTORY_OUTPUTS = 4  # what history() returns
CONTROLS = 13  # the settings controls, in FormValues order
POLL_SECONDS = 1.0


@dataclass
class Slot:
    column: gr.Column
    video: gr.Video
    caption: gr.Markdown
    files: gr.File
    use_seed: gr.Button
    promote: gr.Button

    def outputs(self) -> list[gr.components.Component]:
        return [self.column, self.video, self.caption, self.files, self.promote]


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

    # -- layout --------------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        first = self.option(None)
        spec, presets = first.spec, self.presets_for(None)
        resolution, frames, steps, guidance, fps = preset_values(presets[DEFAULT_PRESET])
        with gr.Blocks(title="I2V Studio", analytics_enabled=False) as demo:
            banner = gr.HTML(banner_html(first, self.runs_on), elem_id="model-banner")
            gr.HTML(self.gpu_panel_html, elem_id="gpu-panel-box")
            with gr.Row(equal_height=False):
                with gr.Column(scale=5):
                    model = gr.Dropdown([(o.label, o.name) for o in self.models.values()], value=first.name,
                                        label="Model", elem_id="model", interactive=len(self.models) > 1,
                                        info="Presets and limits follow the model; one model is in memory at a "
                                             "time, so a switch reloads.")
                    image = uploaded_image(label="Image", sources=["upload", "clipboard"],
                                           elem_id="input-image", height=300)
                    image_report = gr.HTML(elem_id="image-report")
                    with gr.Accordion("Preprocessed image (what the model sees)", open=False):
                        preview = gr.Image(label="Model input", interactive=False, elem_id="preview-image",
                                           height=240)
                    prompt = gr.Textbox(label="Prompt", lines=3, elem_id="prompt",
                                        placeholder="subject + concrete action + direction/speed + environment, "
                                                    "e.g. “a sailboat drifting slowly to the left, waves rippling”")
                    lint = gr.HTML(elem_id="prompt-lint")
                    with gr.Accordion(f"Motion keywords ({len(self.keywords.keywords)}): click one to add it to the "
                                      "prompt", open=False, elem_id="keywords"):
                        chips = []
                        for _category, (label, words) in self.keywords.categories.items():
                            chips.append(gr.Dataset(
                                label=label, components=[gr.Textbox(visible=False)],
                                samples=[[word] for word in words], samples_per_page=len(words),
                                elem_classes=["keyword-chips"],
                            ))
                    preset = gr.Radio(preset_choices(presets), value=DEFAULT_PRESET, label="Preset",
                                      elem_id="preset")
                    with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                        negative = gr.Textbox(label="Negative prompt", lines=2, elem_id="negative-prompt",
                                              placeholder="what to avoid, e.g. “blurry, distorted, flickering”")
                        with gr.Row():
                            resolution_box = gr.Dropdown(resolution_choices(spec), value=resolution,
                                                         label="Resolution", elem_id="resolution")
                            frames_box = gr.Slider(spec.min_frames, spec.max_frames, value=frames,
                                                   step=spec.frame_rule.step, label="Frames", elem_id="frames",
                                                   info=f"Frame counts this model takes: {frames_info(spec)}")
                        with gr.Row():
                            steps_box = gr.Slider(*spec.steps_range, value=steps, step=1, label="Steps",
                                                  elem_id="steps")
                            guidance_box = gr.Slider(*spec.guidance_range, value=guidance, step=0.5,
                                                     label="Guidance (CFG)", elem_id="guidance")
                        with gr.Row():
                            fps_box = gr.Slider(*spec.fps_range, value=fps, step=1, label="Frames per second",
                                                elem_id="fps")
                            candidates = gr.Slider(1, SLOTS, value=1, step=1, label="Candidates (different seeds)",
                                                   elem_id="candidates")
                        with gr.Row():
                            seed = gr.Number(RANDOM_SEED, precision=0, label="Seed (-1 = random)", elem_id="seed")
                            auto_enhance = gr.Checkbox(False, label="Auto-enhance (contrast ×1.2, sharpness ×1.1)",
                                                       elem_id="auto-enhance")
                        traps = gr.HTML(elem_id="param-traps")
                    verdict = gr.HTML(elem_id="plan-verdict")
                    with gr.Row():
                        generate = gr.Button("Generate", variant="primary", elem_id="generate")
                        cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
                with gr.Column(scale=6):
                    status = gr.HTML(render.status_html(None), elem_id="job-status")
                    with gr.Row():
                        slots = [self._slot(index) for index in range(SLOTS)]
                    findings = gr.HTML(elem_id="job-findings")
            with gr.Accordion("History (kept across restarts)", open=True, elem_id="history"):
                gallery = gr.Gallery(label="Past runs", columns=8, height="auto", object_fit="contain",
                                     allow_preview=False, elem_id="history-gallery")
                with gr.Row():
                    history_detail = gr.Markdown("Select a past run to see it and load its settings.",
                                                 elem_id="history-detail")
                    load_settings = gr.Button("Load these settings", interactive=False, elem_id="load-settings")
                    refresh = gr.Button("Refresh", elem_id="refresh-history", size="sm")
                    requeue = gr.Button("Re-queue interrupted jobs", visible=False, elem_id="requeue", size="sm")
                history_table = gr.HTML(elem_id="history-table")

            job_id = gr.State(None)
            browser_job = gr.BrowserState(None, storage_key="i2v-studio-job")
            shown = gr.State(None)  # the job whose videos are on screen: {"id", "videos", "settings", "image"}
            history_ids = gr.State([])
            selected = gr.State(None)
            timer = gr.Timer(POLL_SECONDS, active=False)

            controls = [image, prompt, negative, preset, resolution_box, frames_box, steps_box, guidance_box,
                        fps_box, seed, candidates, auto_enhance, model]
            numbers = [resolution_box, frames_box, steps_box, guidance_box, fps_box]
            slot_outputs = [c for slot in slots for c in slot.outputs()]
            history_outputs = [gallery, history_ids, history_table, requeue]
            private = {"api_visibility": "private"}
            quick = {"concurrency_limit": None, "show_progress": "hidden", **private}

            # Preset → parameters (user clicks only, so loading settings does not get overwritten).
            preset.input(self.fill_preset, [preset, model], numbers, **quick)
            settings_outputs = [verdict, image_report, preview, traps]
            # The verdict for a model change waits for the model's limits: fired beside choose_model it would send
            # the old resolution, which the new model's resolution menu may no longer hold.
            model.input(self.choose_model, [model, preset], [preset, *numbers, banner], **quick).then(
                self.check_settings, controls, settings_outputs, **quick)
            gr.on([c.change for c in controls if c not in (prompt, model)], self.check_settings, controls,
                  settings_outputs, trigger_mode="always_last", **quick)
            # Lint as the user types: "always_last" drops the keystrokes that arrive while a lint is running.
            gr.on([prompt.change, negative.change, model.change], self.lint, [prompt, negative, model], lint,
                  trigger_mode="always_last", **quick)
            for chip in chips:
                chip.click(self.add_keyword, [chip, prompt], prompt, **quick)

            submitted = [job_id, browser_job, status, timer, *slot_outputs, findings, shown]
            generate.click(self.submit, controls, submitted, **quick)
            cancel.click(self.cancel, job_id, status, **quick)
            timer.tick(self.poll, [job_id, shown], [status, timer, *slot_outputs, findings, shown, *history_outputs],
                       **quick)
            for index, slot in enumerate(slots):
                slot.use_seed.click(lambda s, i=index: self.use_seed(s, i), shown, [seed, candidates], **quick)
                slot.promote.click(lambda s, i=index: self.promote(s, i), shown, controls, **quick).then(
                    self.submit, controls, submitted, **quick)

            gallery.select(self.select_history, history_ids,
                           [selected, history_detail, load_settings, *slot_outputs, findings, shown], **quick)
            load_settings.click(self.load_settings, selected, controls, **quick).then(
                self.check_settings, controls, settings_outputs, **quick)
            refresh.click(self.history, None, history_outputs, **quick)
            requeue.click(self.requeue_interrupted, None, [*submitted, *history_outputs], **quick)
            demo.load(self.restore, browser_job,
                      [job_id, status, timer, *slot_outputs, findings, shown, *history_outputs], **quick)
            demo.load(self.check_settings, controls, settings_outputs, **quick)
            demo.load(self.lint, [prompt, negative, model], lint, **quick)
            self._api(demo)
        return demo

    def _slot(self, index: int) -> Slot:
        with gr.Column(visible=False, min_width=220, elem_classes=["candidate"]) as column:
            video = gr.Video(label=f"Candidate {index + 1}", interactive=False, autoplay=True, loop=True,
                             elem_id=f"video-{index}")
            caption = gr.Markdown(elem_id=f"caption-{index}")
            files = gr.File(label="Download video and its record", file_count="multiple", interactive=False,
                            elem_id=f"files-{index}")
            with gr.Row():
                use_seed = gr.Button("Use this seed", size="sm", elem_id=f"use-seed-{index}")
                promote = gr.Button("Promote ↑", size="sm", elem_id=f"promote-{index}")
        return Slot(column, video, caption, files, use_seed, promote)

    def _api(self, demo: gr.Blocks) -> None:
        """``/generate`` for scripts (gradio_client): image and prompt; everything else has a default
        (0 for resolution, frames, steps, guidance or fps = the preset's value)."""
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
            ]
            outputs = [gr.Video(label="video"), gr.File(label="files", file_count="multiple"),
                       gr.JSON(label="result")]
            trigger = gr.Button(visible=False)
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

    # -- settings and guidance -----------------------------------------------------------------------------
    def fill_preset(self, name: str, model: str):
        return control_updates(self.option(model).spec, preset_values(self.presets_for(model)[name]))

    def choose_model(self, model: str, preset: str):
        """The user picked another model: its presets, its limits and the chosen tier's values for it."""
        option, presets = self.option(model), self.presets_for(model)
        preset = preset if preset in presets else DEFAULT_PRESET
        return (gr.Radio(choices=preset_choices(presets), value=preset),
                *control_updates(option.spec, preset_values(presets[preset])), banner_html(option, self.runs_on))

    def check_settings(self, *values):
        """The planner's verdict, image warnings, preview and parameter traps for the current controls."""
        form = FormValues(*values)
        assumed_square = form.image is None
        if assumed_square:
            form = FormValues(Image.new("RGB", (512, 512), (128, 128, 128)), *values[1:])
        try:
            request = to_request(form, self.option(form.model).name)
            request = request.with_changes(prompt=request.prompt or "placeholder")
            job = self.jobs.prepare(request)  # its messages name no server path
        except BadInputError as exc:
            return render.verdict_html(None, exc), gr.skip(), gr.skip(), ""
        expected = self.expected_seconds(job) if self.expected_seconds else None
        verdict = render.verdict_html(job, assumed_square=assumed_square, expected_s=expected)
        traps = render.findings_html([w for w in job.warnings if w.code.startswith("params.")], kind="warning")
        if assumed_square:
            return verdict, "", None, traps
        image_findings = [f for f in job.warnings if f.code.startswith("image.")]
        image_notices = [n for n in job.notices if n.code.startswith(("image.", "size."))]
        report = render.findings_html(image_findings, kind="warning") + render.findings_html(image_notices,
                                                                                             kind="notice")
        if not report:
            scores = job.image_scores
            report = (f'<div class="findings findings-ok" data-code="image.ok">✔ Image looks usable '
                      f"({scores.width}×{scores.height}).</div>")
        return verdict, report, job.image, traps

    def lint(self, prompt: str, negative: str, model: str | None = None) -> str:
        if not (prompt or "").strip():
            return '<div class="findings hint">Describe the subject and its motion; the keywords below help.</div>'
        findings = lint_prompt(prompt, negative or "", self.keywords,
                               max_tokens=self.option(model).spec.max_prompt_tokens)
        if not findings:
            return '<div class="findings findings-ok" data-code="prompt.ok">✔ Concrete motion: good.</div>'
        return render.findings_html(findings, kind="warning")

    @staticmethod
    def add_keyword(sample: list[str], prompt: str) -> str:
        keyword = sample[0] if isinstance(sample, (list, tuple)) else str(sample)
        prompt = (prompt or "").rstrip()
        if not prompt:
            return keyword
        return f"{prompt}{'' if prompt.endswith(',') else ','} {keyword}"

    # -- jobs ----------------------------------------------------------------------------------------------
    def submit(self, *values):
        hidden = self._slot_updates(None)
        try:
            form = FormValues(*values)
            job_id = self.jobs.submit(to_request(form, self.option(form.model).name))
        except BadInputError as exc:
            return (gr.skip(), gr.skip(), render.status_html(None, error=str(exc)), gr.Timer(active=False),
                    *[gr.skip()] * len(hidden), gr.skip(), gr.skip())
        return (job_id, job_id, render.status_html(self.jobs.status(job_id)), gr.Timer(active=True), *hidden, "",
                None)

    def cancel(self, job_id: str | None) -> str:
        if not job_id or not self.jobs.cancel(job_id):
            return gr.skip()
        return render.status_html(self.jobs.status(job_id))

    def poll(self, job_id: str | None, shown: dict | None):
        status = self.jobs.status(job_id) if job_id else None
        unchanged = [gr.skip()] * (len(self._slot_updates(None)) + 2)
        if status is None:
            return (render.status_html(None), gr.Timer(active=False), *unchanged, *[gr.skip()] * HISTORY_OUTPUTS)
        if not status.finished:
            return (render.status_html(status), gr.skip(), *unchanged, *[gr.skip()] * HISTORY_OUTPUTS)
        return (render.status_html(status), gr.Timer(active=False), *self._slot_updates(status),
                self._findings(status), self._shown(status), *self.history())

    def restore(self, browser_job: str | None):
        """Page (re)load: pick up the last job of this browser where it is now."""
        status = self.jobs.status(browser_job) if browser_job else None
        history = self.history()
        if status is None:
            return (None, render.status_html(None), gr.Timer(active=False), *self._slot_updates(None), "", None,
                    *history)
        active = not status.finished
        return (status.id, render.status_html(status), gr.Timer(active=active), *self._slot_updates(status),
                self._findings(status), self._shown(status), *history)

    def api_generate(self, image, prompt, negative_prompt, preset, resolution, frames, steps, guidance, fps, seed,
                     candidates, auto_enhance, model=None, progress=gr.Progress()):
        from_preset = [None if value in (0, None) else value for value in (resolution, frames, steps, guidance, fps)]
        form = FormValues(image, prompt, negative_prompt, preset, *from_preset, seed, candidates, auto_enhance, model)
        try:
            job_id = self.jobs.submit(to_request(form, self.option(model).name, allow_missing=True))
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

    # -- iteration -----------------------------------------------------------------------------------------
    @staticmethod
    def use_seed(shown: dict | None, index: int):
        if not shown or index >= len(shown["videos"]):
            return gr.skip(), gr.skip()
        return shown["videos"][index]["seed"], 1

    def promote(self, shown: dict | None, index: int):
        """Same picture, prompt, model and seed at the next tier up."""
        if not shown or index >= len(shown["videos"]):
            return [gr.skip()] * CONTROLS
        settings = shown["settings"]
        model = self._still_offered(settings.get("model"))
        presets = self.presets_for(model)
        higher = next_tier(presets, settings.get("preset")) or presets[settings.get("preset") or DEFAULT_PRESET]
        return (shown["image"], settings["prompt"], settings.get("negative_prompt", ""), higher.name,
                *control_updates(self.option(model).spec, preset_values(higher)), shown["videos"][index]["seed"], 1,
                settings.get("auto_enhance", False), model)

    def _still_offered(self, model: str | None) -> str:
        """A past job's model if the page still offers it, else the configured one."""
        return model if model in self.models else self.model

    def history(self):
        """Gallery items, their job ids, the history table and the re-queue button (HISTORY_OUTPUTS values)."""
        statuses = self.jobs.history(HISTORY_SIZE)
        done = [s for s in statuses if s.state == "done" and s.result and s.result["videos"]]
        items = [(s.result["videos"][0]["poster"] or s.image_path, render.history_caption(s)) for s in done]
        waiting_again = len(self.jobs.interrupted())
        button = gr.Button(f"Re-queue {waiting_again} interrupted job{'s' if waiting_again > 1 else ''}",
                           visible=waiting_again > 0)
        return items, [s.id for s in done], render.history_table(statuses), button

    def requeue_interrupted(self):
        """One click: every interrupted job goes back into the queue; the page follows the first one."""
        requeued, errors = self._requeue_all()
        if not requeued:
            error = " ".join(errors) or "There is no interrupted job to re-queue."
            return (gr.skip(), gr.skip(), render.status_html(None, error=error), gr.Timer(active=False),
                    *[gr.skip()] * len(self._slot_updates(None)), gr.skip(), gr.skip(), *self.history())
        first = next(iter(requeued.values()))
        problems = "".join(f'<div class="findings warning">{html.escape(e)}</div>' for e in errors)
        return (first, first, render.status_html(self.jobs.status(first)), gr.Timer(active=True),
                *self._slot_updates(None), problems, None, *self.history())

    def _requeue_all(self) -> tuple[dict[str, str], list[str]]:
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
        requeued, errors = self._requeue_all()
        return {"requeued": requeued, "errors": errors}

    def select_history(self, history_ids: list[str], event: gr.SelectData):
        job_id = history_ids[event.index] if history_ids and event.index < len(history_ids) else None
        status = self.jobs.status(job_id) if job_id else None
        if status is None:
            return (None, "That run is no longer in the history.", gr.Button(interactive=False),
                    *self._slot_updates(None), "", None)
        params = status.result.get("params", {})
        detail = (f"**{status.settings.get('prompt', '')}** — {params.get('model')}, "
                  f"{params.get('preset') or 'custom'}, "
                  f"{params.get('width')}×{params.get('height')}, {params.get('frames')} frames, "
                  f"{params.get('steps')} steps, guidance {params.get('guidance')}, {params.get('fps')} fps, "
                  f"seeds {', '.join(str(v['seed']) for v in status.result['videos'])}")
        return (job_id, detail, gr.Button(interactive=True), *self._slot_updates(status), self._findings(status),
                self._shown(status))

    def load_settings(self, job_id: str | None):
        status = self.jobs.status(job_id) if job_id else None
        if status is None:
            return [gr.skip()] * CONTROLS
        request = request_from_settings(status.settings, status.image_path)
        params = (status.result or {}).get("params", {})
        seeds = request.seeds
        model = self._still_offered(request.model)
        presets = self.presets_for(model)
        preset = presets.get(request.preset or DEFAULT_PRESET, presets[DEFAULT_PRESET])
        # The job ran with these numbers; a number the request left to the preset comes from the preset now.
        values = (params.get("resolution") or request.resolution or preset.resolution,
                  params.get("frames") or request.frames or preset.frames,
                  request.steps or params.get("steps") or preset.steps,
                  request.guidance or params.get("guidance") or preset.guidance,
                  request.fps or params.get("fps") or preset.fps)
        return (status.image_path, request.prompt, request.negative_prompt, request.preset or DEFAULT_PRESET,
                *control_updates(self.option(model).spec, values), seeds[0] if seeds else RANDOM_SEED,
                request.candidates, request.auto_enhance, model)

    # -- rendering helpers ---------------------------------------------------------------------------------
    def _slot_updates(self, status: JobStatus | None) -> list[Any]:
        videos = (status.result or {}).get("videos", []) if status and status.state == "done" else []
        params = (status.result or {}).get("params", {}) if status else {}
        can_promote = next_tier(self.presets, (status.settings.get("preset") if status else None)) is not None
        updates: list[Any] = []
        for index in range(SLOTS):
            if index < len(videos):
                video = videos[index]
                updates += [gr.Column(visible=True), video["path"], render.video_caption(video, params),
                            [video["path"], video["sidecar"]], gr.Button(visible=can_promote)]
            else:
                updates += [gr.Column(visible=False), None, "", None, gr.Button(visible=False)]
        return updates

    @staticmethod
    def _findings(status: JobStatus) -> str:
        result = status.result or {}
        return (render.findings_html(result.get("notices", []), kind="notice")
                + render.findings_html(result.get("warnings", []), kind="warning")
                + render.findings_html(result.get("model_warnings", []), kind="model"))

    @staticmethod
    def _shown(status: JobStatus) -> dict | None:
        if status.state != "done" or not status.result:
            return None
        return {"id": status.id, "videos": [{"seed": v["seed"]} for v in status.result["videos"]],
                "settings": status.settings, "image": status.image_path}


def placeholder_request(model: str) -> GenerationRequest:
    """A request for warming the model up before the first job."""
    return GenerationRequest(image=Image.new("RGB", (512, 512), (128, 128, 128)), prompt="warm-up", model=model)
