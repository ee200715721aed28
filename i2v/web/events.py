"""What the page does: each event's wiring and the handler it calls. A handler with several outputs answers with
``{component: value}`` for the components it changes (``page.py`` names them); every other output of its event
stays as it is. Every action is a short call into the engine (``prepare`` for the verdict, ``lint_prompt`` as the
user types, ``JobManager`` for jobs).

Jobs belong to the server: the page keeps only the id of its last job (in the browser's local storage) and asks
the ``JobManager`` for its state once a second while it is active, so a reload or a dropped connection shows
the same job where it is. Each browser also keeps a secret of its own (``page.owner_token``, made at its first
visit); the jobs it submits carry it, and only it may cancel or promote them. Everyone sees every job: another
browser's job is shown, never taken over (``restore``).
"""
from __future__ import annotations

import functools
import html
import secrets
from collections.abc import Callable
from typing import Protocol

import gradio as gr
from PIL import Image

from i2v.backends.catalog import ModelOption
from i2v.engine.engine import Engine
from i2v.engine.presets import DEFAULT_PRESET, Preset
from i2v.engine.resolve import PreparedJob
from i2v.errors import BadInputError
from i2v.guidance.keywords import add_keyword
from i2v.guidance.prompt_lint import KeywordLibrary, lint_prompt
from i2v.loras.choice import lora_choices
from i2v.service.jobs import NOT_YOURS, JobManager, JobStatus, request_from_settings
from i2v.spec import ModelSpec
from i2v.web import render
from i2v.web.forms import RANDOM_SEED, FormValues, next_tier, preset_differences, preset_values, to_request
from i2v.web.framing_picker import FramingEvents
from i2v.web.lora_picker import LoraEvents
from i2v.web.model_choice import banner_html, control_updates, preset_choices
from i2v.web.double_submit import RepeatGuard
from i2v.web.progress_panel import cancel_button
from i2v.web.newest import NewestWins
from i2v.web.page import SELECT_A_RUN, Page, Updates, audio_checkbox


class StudioServices(Protocol):
    """What the page's handlers use of the app (``ui.Studio`` is the one implementation)."""

    jobs: JobManager
    engine: Engine
    presets: dict[str, Preset]
    keywords: KeywordLibrary
    runs_on: str
    expected_seconds: Callable[[PreparedJob], float | None] | None

    def option(self, name: str | None) -> ModelOption: ...
    def presets_for(self, model: str | None) -> dict[str, Preset]: ...
    def still_offered(self, model: str | None) -> str: ...
    def requeue_all(self) -> tuple[dict[str, str], list[str]]: ...

HISTORY_SIZE = 40
NOT_YOURS_TO_PROMOTE = ("This run was started in another browser: only that browser can promote it (Load these "
                        "settings to run them yourself).")
WATCHING = ('<div class="findings hint" data-code="job.not_yours">Started in another browser: shown as it stands; '
            "only that browser can cancel it.</div>")
PICTURE_CONCURRENCY = 2  # page events decoding the picture at once, over all tabs


def history_fingerprint(statuses: list[JobStatus]) -> list[list[str]]:
    """What the history shows, in a form a ``gr.State`` keeps: each run's id and state."""
    return [[status.id, status.state] for status in statuses]


def unchanged() -> dict:
    """Leave every output as it is. Not ``{}``: Gradio takes an empty dict for one value, which an event with several
    outputs refuses."""
    return gr.skip()


class PageEvents(LoraEvents, FramingEvents):
    """The handlers of one built page: ``studio`` for the services, ``page`` for the components they update (the
    LoRA picker's in ``lora_picker.LoraEvents``)."""

    def __init__(self, studio: StudioServices, page: Page):
        self.studio = studio
        self.jobs = studio.jobs
        self.page = page
        self.newest_check = NewestWins()
        self.repeats = RepeatGuard()  # a double click on Generate makes one job

    def wire(self, demo: gr.Blocks) -> None:
        page = self.page
        controls = page.controls()
        settings_outputs = [page.verdict, page.image_report, page.preview, page.traps, page.last_image_box,
                            page.lora_box]
        # What loading settings fills in: the LoRAs' sliders know their names; the banner names the model loaded.
        filled = [*controls, page.lora_names, page.banner]
        job_view = [page.status, page.timer, *page.on_screen()]
        submitted = [page.job_id, page.browser_job, *job_view]
        owned = [*controls, page.owner_token]  # the form and this browser's secret: what submitting sends
        # Cancel follows the job on screen: greyed when nothing of this page's waits or runs.
        job_view.append(page.cancel_button)
        submitted.append(page.cancel_button)
        history = page.history_outputs()
        quick = {"concurrency_limit": None, "show_progress": "hidden", "api_visibility": "private"}
        # Events that decode the picture (a 40 MP upload is ~120 MB and a second each) share one small bound, so
        # many tabs or a script cannot make the app decode dozens at once; the rest are cheap and stay unbounded.
        picture = {**quick, "concurrency_limit": PICTURE_CONCURRENCY, "concurrency_id": "picture"}

        # Preset → parameters (user clicks only, so loading settings does not get overwritten).
        page.preset.input(self.fill_preset, [page.preset, page.model], page.numbers(), **quick).then(
            self.check_settings_newest, controls, settings_outputs, **picture)
        # The verdict for a model change waits for the model's limits: fired beside choose_model it would send the
        # old resolution, which the new model's resolution menu may no longer hold.
        page.model.input(self.choose_model, [page.model, page.preset],
                         [page.preset, *page.numbers(), page.banner, page.last_image_box, page.last_image,
                          page.audio, page.lora_box, page.loras, *page.lora_strengths, page.lora_names],
                         **quick).then(self.check_settings_newest, controls, settings_outputs, **picture)
        # The user's own edits only (``.input``). A fill by the page itself (a preset, a model's limits, loaded
        # settings) changes its controls one at a time, and ``.change`` fired for each sent the others' old values,
        # which Gradio refused against the new limits ("Value 8 is less than minimum value 9"); each fill checks
        # once, after it has landed (``.then``). Controls whose input has its own handler (preset, model, framing,
        # LoRA menu) stay out of this list: Gradio (6.31) replays a deferred "always_last" run by dispatching the
        # *finished* run's trigger event again, which re-ran fill_preset and put the preset's numbers back over a
        # value typed while the preset's check was still running.
        own_handler = (page.prompt, page.model, page.framing, page.preset, page.loras)
        gr.on([c.input for c in controls if c not in own_handler],
              self.check_settings_newest, controls, settings_outputs, trigger_mode="always_last", **picture)
        page.framing.input(self.choose_framing, page.framing, [page.framing, page.crop_x, page.crop_y],
                           **quick).then(self.check_settings_newest, controls, settings_outputs, **picture)
        # Lint as the user types: "always_last" drops the keystrokes that arrive while a lint is running.
        lint_inputs = [page.prompt, page.negative_prompt, page.model]
        gr.on([c.change for c in lint_inputs], self.lint, lint_inputs, page.lint, trigger_mode="always_last",
              **quick)
        for chip in page.chips:
            chip.click(self.add_keyword, [chip, page.prompt], page.prompt, **quick)

        page.generate_button.click(self.submit, owned, submitted, **picture)
        page.cancel_button.click(self.cancel, [page.job_id, page.owner_token], [page.status, page.cancel_button],
                                 **quick)
        page.queue.wire(demo, self.jobs, page.owner_token, quick)
        page.workers.wire(demo, self.jobs, quick)
        page.timer.tick(self.poll, [page.job_id, page.shown], [*job_view, *history], **quick)
        for index, slot in enumerate(page.slots):
            slot.use_seed.click(functools.partial(self.use_seed, index=index), page.shown,
                                [page.seed, page.candidates], **quick)
            # Promote fills in the next tier and says so; the user starts it with Generate (a long job is never
            # started by a click that did not say so), and the videos on screen stay until then.
            slot.promote.click(functools.partial(self.promote, index=index), [page.shown, page.owner_token],
                               filled, **quick).then(self.check_settings_newest, controls, settings_outputs, **picture)

        page.gallery.select(self.select_history, page.history_ids,
                            [page.selected, page.history_detail, page.load_button, *page.on_screen()], **quick)
        page.load_button.click(self.load_settings, page.selected, filled, **quick).then(
            self.check_settings_newest, controls, settings_outputs, **picture)
        page.refresh_button.click(self.history, None, history, **quick)
        page.history_timer.tick(self.history_if_changed, page.history_shown, history, **quick)
        page.requeue_button.click(self.requeue_interrupted, None, [*submitted, *history], **quick)
        demo.load(self.claim_owner, page.owner_token, page.owner_token, **quick)
        # A reload puts this browser's job back: its state, and the picture and settings it was made from.
        demo.load(self.restore, [page.browser_job, page.owner_token], [page.job_id, *job_view, *history, *filled],
                  **quick).then(self.check_settings_newest, controls, settings_outputs, **picture)
        demo.load(self.check_settings_newest, controls, settings_outputs, **picture)
        demo.load(self.lint, lint_inputs, page.lint, **quick)
        self.wire_lora_picker(demo, quick).then(self.check_settings_newest, controls, settings_outputs, **picture)

    # -- settings and guidance -----------------------------------------------------------------------------
    def fill_preset(self, name: str, model: str) -> Updates:
        spec = self.studio.option(model).spec
        return self.page.named(control_updates(spec, preset_values(self.studio.presets_for(model)[name])))

    def choose_model(self, model: str, preset: str) -> Updates:
        """The user picked another model: its presets, its limits and the chosen tier's values for it."""
        option, presets = self.studio.option(model), self.studio.presets_for(model)
        preset = preset if preset in presets else DEFAULT_PRESET
        page = self.page
        takes_last = option.spec.takes_last_image
        return {**self._model_shown(model, preset),
                **page.named(control_updates(option.spec, preset_values(presets[preset]))),
                # A last frame left in a hidden control would be refused on every run of this model: drop it.
                page.last_image_box: gr.Column(visible=takes_last),
                page.audio: gr.Checkbox(visible=option.spec.has_audio),
                **self.lora_picker_for_model(option.spec.takes_loras),
                **({} if takes_last else {page.last_image: None})}

    def _model_shown(self, model: str, preset: str) -> Updates:
        """The banner and the tiers' descriptions for ``model``: whenever the menu's model changes, however it
        changed (the user, Load these settings, Promote), so the banner never names another model than the menu."""
        page, presets = self.page, self.studio.presets_for(model)
        return {page.banner: banner_html(self.studio.option(model), self.studio.runs_on),
                page.preset: gr.Radio(choices=preset_choices(presets), value=preset)}

    def check_settings_newest(self, request: gr.Request, *values) -> Updates:
        """``check_settings`` as the page wires it: a tab's older check that finishes after a newer one (the model
        change's check can outlast the check of a value typed just after) is dropped, so the verdict on screen
        always describes the controls as they are."""
        tab = getattr(request, "session_hash", None)
        ticket = self.newest_check.begin(tab)
        updates = self.check_settings(*values)
        return updates if self.newest_check.is_newest(tab, ticket) else unchanged()

    def check_settings(self, *values) -> Updates:
        """The planner's verdict, image warnings, preview and parameter traps for the current controls."""
        page, form = self.page, FormValues(*values)
        assumed_square = form.image is None
        if assumed_square:
            form = FormValues(Image.new("RGB", (512, 512), (128, 128, 128)), *values[1:])
        # The last-frame and LoRA controls follow the model however it was chosen (menu, loaded settings, load).
        spec = self._spec(form.model)
        box = {page.last_image_box: gr.Column(visible=bool(spec and spec.takes_last_image)),
               page.lora_box: gr.Column(visible=bool(spec and spec.takes_loras))}
        try:
            request = to_request(form, self.studio.option(form.model).name)
            # Through the job manager: its messages name no server path.
            job = self.studio.jobs.prepare(request.with_changes(prompt=request.prompt or "placeholder"))
        except BadInputError as exc:  # the image report and preview still describe the last good settings
            return {page.verdict: render.verdict_html(None, exc), page.traps: "", **box}
        expected = self.studio.expected_seconds(job) if self.studio.expected_seconds else None
        traps = [w for w in job.warnings if w.code.startswith("params.")]
        custom = preset_differences(request, self.studio.presets_for(form.model).get(request.preset or DEFAULT_PRESET))
        return {**box, page.verdict: render.verdict_html(job, assumed_square=assumed_square, expected_s=expected,
                                                         custom=custom),
                page.image_report: "" if assumed_square else self._image_report(job),
                page.preview: None if assumed_square else job.image,
                page.traps: render.findings_html(traps, kind="warning")}

    def _spec(self, model: str | None) -> ModelSpec | None:
        try:
            return self.studio.option(model).spec
        except BadInputError:  # a model the page does not offer: the verdict says so
            return None

    @staticmethod
    def _image_report(job: PreparedJob) -> str:
        image_findings = [f for f in job.warnings if f.code.startswith("image.")]
        image_notices = [n for n in job.notices if n.code.startswith(("image.", "size."))]
        report = render.findings_html(image_findings, kind="warning") + render.findings_html(image_notices,
                                                                                             kind="notice")
        if report:
            return report
        scores = job.image_scores
        return (f'<div class="findings findings-ok" data-code="image.ok">✔ Image looks usable '
                f"({scores.width}×{scores.height}).</div>")

    def lint(self, prompt: str, negative: str, model: str | None = None) -> str:
        if not (prompt or "").strip():
            return '<div class="findings hint">Describe the subject and its motion; the keywords below help.</div>'
        findings = lint_prompt(prompt, negative or "", self.studio.keywords,
                               max_tokens=self.studio.option(model).spec.max_prompt_tokens)
        if not findings:
            return '<div class="findings findings-ok" data-code="prompt.ok">✔ Concrete motion: good.</div>'
        return render.findings_html(findings, kind="warning")

    @staticmethod
    def add_keyword(sample: list[str], prompt: str) -> str:
        return add_keyword(prompt, sample[0] if isinstance(sample, (list, tuple)) else str(sample))

    # -- jobs ----------------------------------------------------------------------------------------------
    @staticmethod
    def claim_owner(token: str | None) -> str:
        """Page load: this browser's secret, made at its first visit and kept in its local storage."""
        return token or secrets.token_urlsafe(24)

    def submit(self, *values) -> Updates:
        """``values``: the controls (``FormValues``), then this browser's secret."""
        page, (*controls, owner) = self.page, values
        try:
            form = FormValues(*controls)
            job_id = self.repeats.submit_once(
                owner, repr(controls), lambda: self.jobs.submit(to_request(form, self.studio.option(form.model).name),
                                                                owner=owner),
                still_active=self._still_going)
        except BadInputError as exc:  # the last job's videos stay on screen under the message
            return {page.status: render.status_html(None, error=str(exc)), page.timer: gr.Timer(active=False)}
        status = self.jobs.status(job_id)
        return {page.job_id: job_id, page.browser_job: job_id, page.status: render.status_html(status),
                page.timer: gr.Timer(active=True), page.cancel_button: cancel_button(status),
                **self._on_screen(None)}

    def _still_going(self, job_id: str) -> bool:
        """Neither ended nor told to stop: a second click on the same form means this job."""
        status = self.jobs.status(job_id)
        return status is not None and not status.finished and not status.cancel_requested

    def cancel(self, job_id: str | None, owner: str | None) -> Updates:
        page = self.page
        if job_id and not self.jobs.may_control(job_id, owner):
            return {page.status: render.status_html(None, error=NOT_YOURS)}
        if not job_id or not self.jobs.cancel(job_id, owner):
            status = self.jobs.status(job_id) if job_id else None
            return {page.cancel_button: cancel_button(status)}  # it had ended: nothing left to cancel
        status = self.jobs.status(job_id)
        return {page.status: render.status_html(status), page.cancel_button: cancel_button(status)}

    def poll(self, job_id: str | None, shown: dict | None) -> Updates:
        page = self.page
        status = self.jobs.status(job_id) if job_id else None
        if status is None:
            return {page.status: render.status_html(None), page.timer: gr.Timer(active=False),
                    page.cancel_button: cancel_button(None)}
        if not status.finished:
            return {page.status: render.status_html(status), page.cancel_button: cancel_button(status)}
        return {page.status: render.status_html(status), page.timer: gr.Timer(active=False),
                page.cancel_button: cancel_button(status), **self._on_screen(status), **self.history()}

    def restore(self, browser_job: str | None, owner: str | None) -> Updates:
        """Page (re)load: pick up the last job of this browser where it is now. A job id in the browser's storage
        is only a claim: another browser's job is shown as it stands, and not taken over (Cancel cannot reach it)."""
        page = self.page
        status = self.jobs.status(browser_job) if browser_job else None
        if status is not None and not self.jobs.may_control(status.id, owner):
            return {page.job_id: None, page.status: render.status_html(status) + WATCHING,
                    page.timer: gr.Timer(active=False), page.cancel_button: cancel_button(status, owned=False),
                    **self._on_screen(status), **self.history()}
        return {page.job_id: status.id if status else None, page.status: render.status_html(status),
                page.timer: gr.Timer(active=status is not None and not status.finished),
                page.cancel_button: cancel_button(status), **self._on_screen(status), **self.history(),
                **(self._settings_of(status) if status else {})}

    # -- iteration -----------------------------------------------------------------------------------------
    def use_seed(self, shown: dict | None, index: int) -> Updates:
        if not shown or index >= len(shown["videos"]):
            return unchanged()
        return {self.page.seed: shown["videos"][index]["seed"], self.page.candidates: 1}

    def promote(self, shown: dict | None, owner: str | None, index: int) -> Updates:
        """Same picture, prompt, model and seed at the next tier up, filled in for Generate (which starts it): for
        the browser that made the run only."""
        if not shown or index >= len(shown["videos"]):
            return unchanged()
        if not self.jobs.may_control(shown["id"], owner):
            raise gr.Error(NOT_YOURS_TO_PROMOTE, print_exception=False)
        page, settings = self.page, shown["settings"]
        model = self.studio.still_offered(settings.get("model"))
        presets = self.studio.presets_for(model)
        higher = next_tier(presets, settings.get("preset")) or presets[settings.get("preset") or DEFAULT_PRESET]
        gr.Info(f"{higher.label} settings filled in with seed {shown['videos'][index]['seed']}: check the verdict "
                "(how long it takes) and press Generate to run it.")
        return {page.image: shown["image"], page.prompt: settings["prompt"],
                page.negative_prompt: settings.get("negative_prompt", ""), **self._model_shown(model, higher.name),
                **page.named(control_updates(self.studio.option(model).spec, preset_values(higher))),
                page.seed: shown["videos"][index]["seed"], page.candidates: 1,
                page.auto_enhance: settings.get("auto_enhance", False), page.model: model,
                page.last_image: settings.get("last_image") if model == settings.get("model") else None,
                page.audio: audio_checkbox(self.studio.option(model).spec, settings.get("audio", True)),
                **self.framing_shown(settings.get("framing"), settings.get("crop_focus")),
                **self.lora_controls(lora_choices(settings.get("loras")) if model == settings.get("model") else ())}

    # -- history -------------------------------------------------------------------------------------------
    def history(self, statuses: list[JobStatus] | None = None) -> Updates:
        """The gallery of finished runs (with their ids, which map a click back to a job), the table of every run
        and the re-queue button. The redrawn gallery shows no selection, so none is kept: Load these settings
        waits for the next click instead of loading a run the user no longer sees selected."""
        page = self.page
        statuses = self.jobs.history(HISTORY_SIZE) if statuses is None else statuses
        done = [s for s in statuses if s.state == "done" and s.result and s.result["videos"]]
        waiting_again = len(self.jobs.interrupted())
        return {page.gallery: [(s.result["videos"][0]["poster"] or s.image_path, render.history_caption(s))
                               for s in done],
                page.history_ids: [s.id for s in done],
                page.history_table: render.history_table(statuses),
                page.requeue_button: gr.Button(f"Re-queue {waiting_again} interrupted "
                                               f"job{'s' if waiting_again > 1 else ''}", visible=waiting_again > 0),
                page.history_shown: history_fingerprint(statuses),
                page.selected: None, page.history_detail: SELECT_A_RUN,
                page.load_button: gr.Button(interactive=False)}

    def history_if_changed(self, shown: list | None) -> Updates:
        """The page's slow timer: the history again only when a run was added or changed state (in any tab, or by a
        script), so a selection is not lost to a redraw that changes nothing."""
        statuses = self.jobs.history(HISTORY_SIZE)
        if shown == history_fingerprint(statuses):
            return unchanged()
        return self.history(statuses)

    def requeue_interrupted(self) -> Updates:
        """One click: every interrupted job goes back into the queue; the page follows the first one."""
        page = self.page
        requeued, errors = self.studio.requeue_all()
        if not requeued:
            error = " ".join(errors) or "There is no interrupted job to re-queue."
            return {page.status: render.status_html(None, error=error), page.timer: gr.Timer(active=False),
                    **self.history()}
        first = next(iter(requeued.values()))
        problems = "".join(f'<div class="findings warning">{html.escape(e)}</div>' for e in errors)
        status = self.jobs.status(first)
        return {page.job_id: first, page.browser_job: first, page.cancel_button: cancel_button(status),
                page.status: render.status_html(status), page.timer: gr.Timer(active=True),
                **self._on_screen(None), page.findings: problems, **self.history()}

    def select_history(self, history_ids: list[str], event: gr.SelectData) -> Updates:
        page = self.page
        job_id = history_ids[event.index] if history_ids and event.index < len(history_ids) else None
        status = self.jobs.status(job_id) if job_id else None
        if status is None:
            return {page.selected: None, page.history_detail: "That run is no longer in the history.",
                    page.load_button: gr.Button(interactive=False), **self._on_screen(None)}
        return {page.selected: job_id, page.history_detail: render.history_detail(status),
                page.load_button: gr.Button(interactive=True), **self._on_screen(status)}

    def load_settings(self, job_id: str | None) -> Updates:
        status = self.jobs.status(job_id) if job_id else None
        return self._settings_of(status) if status is not None else unchanged()

    def _settings_of(self, status: JobStatus) -> Updates:
        """The form filled with the job's picture and settings, the model's banner and tiers with them."""
        page = self.page
        request = request_from_settings(status.settings, status.image_path)
        params = (status.result or {}).get("params", {})
        model = self.studio.still_offered(request.model)
        presets = self.studio.presets_for(model)
        preset = presets.get(request.preset or DEFAULT_PRESET, presets[DEFAULT_PRESET])
        # The job ran with these numbers; a number the request left to the preset comes from the preset now.
        values = (params.get("resolution") or request.resolution or preset.resolution,
                  params.get("frames") or request.frames or preset.frames,
                  request.steps or params.get("steps") or preset.steps,
                  request.guidance or params.get("guidance") or preset.guidance,
                  request.fps or params.get("fps") or preset.fps)
        return {page.image: status.image_path, page.prompt: request.prompt,
                page.negative_prompt: request.negative_prompt, **self._model_shown(model, preset.name),
                **page.named(control_updates(self.studio.option(model).spec, values)),
                page.seed: request.seeds[0] if request.seeds else RANDOM_SEED, page.candidates: request.candidates,
                page.auto_enhance: request.auto_enhance, page.model: model,
                page.last_image: request.last_image if model == request.model else None,
                page.audio: audio_checkbox(self.studio.option(model).spec, request.audio),
                **self.framing_shown(request.framing, request.crop_focus),
                **self.lora_controls(request.loras if model == request.model else ())}

    # -- what shows a job's outcome ------------------------------------------------------------------------
    def _on_screen(self, status: JobStatus | None) -> Updates:
        """The candidates, findings and ``shown`` state for ``status``: empty for none or a job not done yet."""
        done = status is not None and status.state == "done"
        videos = (status.result or {}).get("videos", []) if done else []
        params = (status.result or {}).get("params", {}) if status else {}
        can_promote = next_tier(self.studio.presets, status.settings.get("preset") if status else None) is not None
        updates: Updates = {}
        for index, slot in enumerate(self.page.slots):
            updates |= slot.show(videos[index], params, can_promote=can_promote) if index < len(videos) else slot.hide()
        return {**updates, self.page.findings: render.job_findings_html(status) if status else "",
                self.page.shown: self._shown(status) if done else None}

    @staticmethod
    def _shown(status: JobStatus) -> dict | None:
        """What the slots' buttons need of the job on screen: its seeds, settings and picture."""
        if not status.result:
            return None
        return {"id": status.id, "videos": [{"seed": v["seed"]} for v in status.result["videos"]],
                "settings": status.settings, "image": status.image_path}
