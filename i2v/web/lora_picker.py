"""The page's LoRA picker: a menu of the LoRA folder's files (``I2V_LORA_DIR``; a path or a hub file
``owner/repo/file.safetensors`` may be typed into it) with one strength slider per chosen LoRA, under Advanced and
only for a model that takes LoRAs. Its layout (``LoraPicker``, built by ``page.py``) and its handlers
(``LoraEvents``, a part of ``events.PageEvents``) are kept here so that both of those files stay short.

Why a menu and sliders, not a table or a text box: Gradio's table has no menu cell, so the folder's files could not
be picked from it, and it is hard to edit on a phone; ``name:strength`` lines make the user spell file names. A
multiselect menu lists what the folder holds and still takes a typed path, and a labelled slider per chosen LoRA
(with its number box) says which strength belongs to which file, at any width.
"""
from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.blocks import Block

from i2v.errors import BadInputError
from i2v.loras.choice import DEFAULT_STRENGTH, MAX_LORAS, STRENGTH_RANGE, LoraChoice, parse_lora
from i2v.loras.files import available_loras


class LoraPicker:
    """Built inside the Advanced accordion; hidden (``box``) for a model that does not take LoRAs."""

    def __init__(self, takes_loras: bool):
        with gr.Column(visible=takes_loras, elem_id="lora-box") as self.box:
            self.menu = gr.Dropdown(available_loras(), value=[], multiselect=True, max_choices=MAX_LORAS,
                                    allow_custom_value=True, label=f"LoRAs (up to {MAX_LORAS})", elem_id="loras",
                                    info="Files in the LoRA folder (I2V_LORA_DIR); or type a .safetensors path or a "
                                         "hub file owner/repo/file.safetensors and press Enter.")
            lowest, highest = STRENGTH_RANGE
            # One slider per LoRA a request may carry, shown while a LoRA is chosen for it.
            self.strengths = [gr.Slider(lowest, highest, value=DEFAULT_STRENGTH, step=0.05, visible=False,
                                        label=f"Strength of LoRA {slot + 1}", elem_id=f"lora-strength-{slot + 1}",
                                        info="1 = as trained; 0.5-1 is typical")
                              for slot in range(MAX_LORAS)]
        # The names the sliders belong to now: when one LoRA is removed, the others keep their own strengths.
        self.names_shown = gr.State([])


def slider_update(slot: int, choice: LoraChoice | None) -> gr.Slider:
    """Slot ``slot``'s slider holding ``choice``'s strength, or hidden and back at the default when it has none."""
    if choice is None:
        return gr.Slider(value=DEFAULT_STRENGTH, visible=False, label=f"Strength of LoRA {slot + 1}")
    return gr.Slider(value=choice.strength, visible=True, label=f"Strength of {choice.source}")


def typed_choice(name: str) -> LoraChoice:
    """A name typed into the menu, as the CLI reads it (``PATH[:STRENGTH][@high|@low]``): the strength moves to its
    slider, an expert stays in the menu's name (``form_loras`` reads it from there). A name that does not parse stays
    as typed, at the default strength: the settings check says what is wrong with it."""
    try:
        choice = parse_lora(name)
    except BadInputError:
        return LoraChoice(name, DEFAULT_STRENGTH)
    return LoraChoice(menu_name(choice), choice.strength)


def menu_name(choice: LoraChoice) -> str:
    return choice.source + ("" if choice.expert == "both" else f"@{choice.expert}")


class LoraEvents:
    """The picker's handlers, and the LoRA part of the answers of ``PageEvents``' other handlers."""

    page: Any  # page.Page: loras (the menu), lora_strengths (the sliders), lora_names (the state), lora_box

    def wire_lora_picker(self, demo: gr.Blocks, options: dict):
        """Returns the user's pick of LoRAs, for the page to check the settings once its sliders have landed."""
        page = self.page
        demo.load(self.refresh_lora_menu, None, page.loras, **options)  # files added since the app started
        # User picks only: a menu filled by Load these settings brings its own strengths.
        return page.loras.input(self.follow_lora_choice, [page.loras, *page.lora_strengths, page.lora_names],
                                [*page.lora_strengths, page.lora_names], **options)

    @staticmethod
    def refresh_lora_menu() -> gr.Dropdown:
        return gr.Dropdown(choices=available_loras())

    def follow_lora_choice(self, names: list[str] | None, *values) -> dict[Block, Any]:
        """``values``: the sliders' strengths, then the names they belonged to. A LoRA keeps its strength when
        another is added or removed; a new one starts at the default, or at the strength typed with it
        (``my_style.safetensors:0.8`` becomes ``my_style.safetensors`` in the menu and 0.8 on its slider)."""
        *strengths, names_shown = values
        before = dict(zip(names_shown or [], strengths))
        choices = [LoraChoice(name, before[name]) if name in before else typed_choice(name) for name in names or []]
        updates = self.lora_sliders(choices)
        menu = [choice.source for choice in choices]
        if menu != list(names or []):
            updates[self.page.loras] = menu
        return updates

    def lora_sliders(self, choices: list[LoraChoice] | tuple[LoraChoice, ...]) -> dict[Block, Any]:
        page = self.page
        updates: dict[Block, Any] = {page.lora_names: [choice.source for choice in choices]}
        for slot, slider in enumerate(page.lora_strengths):
            updates[slider] = slider_update(slot, choices[slot] if slot < len(choices) else None)
        return updates

    def lora_controls(self, choices: tuple[LoraChoice, ...]) -> dict[Block, Any]:
        """The menu and the sliders holding ``choices`` (Load these settings, Promote)."""
        shown = [LoraChoice(menu_name(choice), choice.strength) for choice in choices]
        return {self.page.loras: [choice.source for choice in shown], **self.lora_sliders(shown)}

    def lora_picker_for_model(self, takes_loras: bool) -> dict[Block, Any]:
        """A model change: the picker shows for a model that takes LoRAs, with the folder's files listed again;
        elsewhere it hides and lets go of its LoRAs, which every run of that model would refuse."""
        page = self.page
        if takes_loras:
            return {page.lora_box: gr.Column(visible=True), page.loras: gr.Dropdown(choices=available_loras())}
        # Built as the menu is (multiselect, custom values), or Gradio warns that [] is not one of its choices.
        emptied = gr.Dropdown(choices=available_loras(), value=[], multiselect=True, allow_custom_value=True)
        return {page.lora_box: gr.Column(visible=False), page.loras: emptied, **self.lora_sliders(())}
