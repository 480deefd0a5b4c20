"""The LoRA and embedding browser under the prompt: searchable cards; a click adds the card's tag to the prompt (and
a second click takes it out again, as A1111's cards do)."""

from __future__ import annotations

import re
from functools import lru_cache

import gradio as gr
from PIL import Image, ImageDraw, ImageOps

from core.lora_files import list_loras
from core.network_cards import NetworkCard, network_cards
from core.registry import ModelRegistry
from ui.symbols import REFRESH

CARD_SIZE = 160
TAB_TITLES = {"lora": "LoRA", "embedding": "Textual Inversion"}


def toggle_in_prompt(prompt: str, card: NetworkCard) -> str:
    """The prompt with the card's tag added at the end, or removed when it is already there."""
    if card.kind == "lora":
        pattern = re.compile(rf"\s*<lora:{re.escape(card.name)}(:[^>]*)?>", re.IGNORECASE)
    else:
        pattern = re.compile(rf"(,\s*|\s*)(?<![\w-]){re.escape(card.name)}(?![\w-])")
    if pattern.search(prompt):
        return pattern.sub("", prompt, count=1).strip()
    separator = " " if card.kind == "lora" or not prompt.strip() else ", "
    return f"{prompt.rstrip()}{separator}{card.prompt_text}".strip()


@lru_cache(maxsize=512)
def _thumbnail(path: str, stamp: float) -> Image.Image:
    with Image.open(path) as image:
        return ImageOps.fit(image.convert("RGB"), (CARD_SIZE, CARD_SIZE))


@lru_cache(maxsize=512)
def _placeholder(name: str) -> Image.Image:
    """A plain card with the name on it for files without a preview image."""
    image = Image.new("RGB", (CARD_SIZE, CARD_SIZE), (72, 76, 88))
    draw = ImageDraw.Draw(image)
    lines = [name[i : i + 16] for i in range(0, min(len(name), 64), 16)]
    draw.multiline_text((10, CARD_SIZE // 2 - 10 * len(lines)), "\n".join(lines), fill=(235, 235, 240), spacing=6)
    return image


def card_image(card: NetworkCard) -> Image.Image:
    if card.preview is not None:
        try:
            return _thumbnail(str(card.preview), card.preview.stat().st_mtime)
        except OSError:  # a broken or vanished preview file: the card still works
            pass
    return _placeholder(card.name)


def build_network_browser(mode: str, registry: ModelRegistry, prompt: gr.Textbox) -> None:
    """An accordion (closed, so it costs nothing until opened) with a LoRA and an embedding tab."""
    with gr.Accordion("LoRA and embeddings", open=False, elem_id=f"{mode}_networks") as accordion:
        with gr.Row(equal_height=True):
            search = gr.Textbox(
                placeholder="Search by name or folder", show_label=False, scale=4, elem_id=f"{mode}_networks_search"
            )
            refresh = gr.Button(
                REFRESH, scale=0, min_width=40, elem_id=f"{mode}_networks_refresh", elem_classes="tool-button"
            )
        galleries = {}
        with gr.Tabs():
            for kind, title in TAB_TITLES.items():
                with gr.Tab(title, id=f"{mode}_{kind}_tab"):
                    gallery = gr.Gallery(
                        show_label=False,
                        columns=6,
                        height=250,
                        allow_preview=False,
                        object_fit="cover",
                        elem_id=f"{mode}_{kind}_cards",
                    )
                    galleries[kind] = (gallery, gr.State([]))
    _connect(registry, prompt, accordion, search, refresh, galleries)


def _connect(registry: ModelRegistry, prompt, accordion, search, refresh, galleries) -> None:
    kinds = list(galleries)
    outputs = [component for kind in kinds for component in galleries[kind]]

    def show(text: str):
        values = []
        for kind in kinds:
            if kind == "lora":  # with the family each was made for, so a mismatch shows before it is used
                infos = list_loras(registry, text or "")
                cards = [info.card for info in infos]
                captions = [f"{info.card.name} · {info.family}" if info.family else info.card.name for info in infos]
            else:
                cards = network_cards(registry, kind, text or "")
                captions = [card.name for card in cards]
            values += [[(card_image(card), caption) for card, caption in zip(cards, captions, strict=True)], cards]
        return values

    for trigger in (accordion.expand, search.change, refresh.click):
        trigger(show, inputs=search, outputs=outputs, queue=False, show_progress="hidden", api_name=False)

    for gallery, cards in galleries.values():

        def pick(prompt_text: str, shown: list[NetworkCard], evt: gr.SelectData):
            if evt.index is None or not 0 <= evt.index < len(shown):
                return gr.skip()
            return toggle_in_prompt(prompt_text or "", shown[evt.index])

        gallery.select(pick, inputs=[prompt, cards], outputs=prompt, queue=False, api_name=False)
