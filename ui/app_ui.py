"""Builds the whole page: one tab per mode, each bound to the core engine through Services."""

from __future__ import annotations

import html
import json

import gradio as gr

from core.services import Services
from ui.extras_tab import build_extras_tab
from ui.img2img_tab import build_img2img_tab
from ui.inpaint_tab import build_inpaint_tab
from ui.model_pickers import build_model_pickers
from ui.png_info_tab import build_png_info_tab
from ui.remembered import remember_values
from ui.send_to import connect_send_to
from ui.settings_tab import build_settings_tab
from ui.symbols import TOOLTIPS
from ui.txt2img_tab import build_prompt_tab, build_txt2img_tab
from ui.worker_status import build_worker_status

CSS = """
.tool-button { max-width: 2.75em; min-width: 2.75em !important; height: 2.75em; align-self: center; padding: 0;
  font-size: 1.15em; }
.settings-section { margin-top: .6em; }
.server-banner { padding: .6em 1em; border-radius: 6px; background: #b91c1c; color: #fff; font-weight: 600; }
.live-preview img { width: 100%; height: 100%; object-fit: contain; }  /* approximate previews come at 1/8 size */
.worker-status { padding: .4em 1em; border-radius: 6px; background: var(--color-accent-soft); }
.worker-failed { background: #b91c1c; color: #fff; }
.job-progress { position: relative; height: 1.6em; border-radius: 6px; background: var(--block-background-fill);
  border: 1px solid var(--border-color-primary); overflow: hidden; }
.job-progress-bar { position: absolute; inset: 0 auto 0 0; background: var(--color-accent-soft);
  transition: width .2s; }
.job-progress-text { position: relative; padding: 0 .5em; font-size: var(--text-sm); line-height: 1.6em; }
.job-notice { font-size: var(--text-sm); color: var(--body-text-color-subdued); }
.job-done { font-size: var(--text-sm); }
/* Results shown whole: a picture's tile never taller than the panel (a lone square tile would be as tall as the
   panel is wide, and cut off), the picture fitted inside it; small ones scaled up with crisp pixels (app JS). */
.result-gallery .thumbnail-item { max-height: calc(420px - 3.5rem); }
.result-gallery .thumbnail-item img { width: 100%; height: 100%; object-fit: contain; }
.token-counter { text-align: right; font-size: var(--text-xs); color: var(--body-text-color-subdued);
  margin: calc(-1 * var(--layout-gap) - 1.7em) .9em 0 0 !important; min-height: 0; z-index: 1;
  pointer-events: none; }
.token-counter .progress-text, .token-counter .timer { display: none; }
"""

# A1111's habit: Ctrl+Enter (Cmd+Enter) in a prompt box presses that tab's Generate button.
# Symbol-only tool buttons get a tooltip (Gradio buttons have no title parameter).
JS = """
() => {
  const tooltips = TOOLTIPS;
  const addTitles = () => document.querySelectorAll('button.tool-button').forEach((b) => {
    const title = tooltips[b.textContent.trim()];
    if (title && !b.title) { b.title = title; b.setAttribute('aria-label', title); }
  });
  // A result smaller than its box is scaled up with crisp pixels, not blurred; larger ones are smoothed as usual.
  const crisp = (img) => {
    img.style.imageRendering = img.naturalWidth && img.naturalWidth < img.clientWidth ? 'pixelated' : 'auto';
  };
  const watchResults = () => document.querySelectorAll('.result-gallery img').forEach((img) => {
    if (!img.dataset.crisp) { img.dataset.crisp = '1'; img.addEventListener('load', () => crisp(img)); }
    if (img.complete) crisp(img);
  });
  const onChange = () => { addTitles(); watchResults(); };
  new MutationObserver(onChange).observe(document.body, { childList: true, subtree: true });
  window.addEventListener('resize', watchResults);
  addTitles();
  document.addEventListener('keydown', (e) => {
    if (!(e.ctrlKey || e.metaKey) || e.key !== 'Enter') return;
    const box = e.target.closest('[id$="_prompt"]');
    if (!box) return;
    const button = document.getElementById(box.id.replace(/_(neg_)?prompt$/, '') + '_generate');
    if (button) { e.preventDefault(); button.click(); }
  });
}
""".replace("TOOLTIPS", json.dumps(TOOLTIPS, ensure_ascii=False))


def build_ui(services: Services, banner: str = "") -> gr.Blocks:
    """`banner`: a warning shown at the top of every page (e.g. that the server has no login)."""
    with gr.Blocks(title="SD Studio") as page:
        if banner:
            gr.HTML(f'<div class="server-banner" role="alert">{html.escape(banner)}</div>', elem_id="server_banner")
        build_worker_status(services.generator)
        pickers = build_model_pickers(services.registry, services.settings.default_checkpoint)
        remembered = {"models": pickers.remembered(services.registry, services.settings)}
        with gr.Tabs() as tabs:
            with gr.Tab("txt2img", id="txt2img"):
                txt2img = build_txt2img_tab(services, pickers)
            with gr.Tab("img2img", id="img2img"):
                img2img = build_img2img_tab(services, pickers)
            with gr.Tab("Inpaint", id="inpaint"):
                inpaint = build_inpaint_tab(services, pickers)
            with gr.Tab("ControlNet", id="controlnet"):
                controlnet = build_prompt_tab("controlnet", services, pickers, units_open=True)
            generation_tabs = (txt2img, img2img, inpaint, controlnet)
            remembered.update({tab.mode: tab.remembered for tab in generation_tabs})
            with gr.Tab("Extras", id="extras"):
                extras_image = build_extras_tab(services)
            with gr.Tab("PNG Info", id="pnginfo"):
                build_png_info_tab(services, tabs, list(generation_tabs), extras_image)
            with gr.Tab("Settings", id="settings"):
                build_settings_tab(page, services, list(remembered))
        for source in generation_tabs:
            connect_send_to(source, img2img, source.results.send_to_img2img, tabs, services)
            connect_send_to(source, inpaint, source.results.send_to_inpaint, tabs, services)
        for scope, fields in remembered.items():
            remember_values(page, scope, fields, services.ui_secret)
    return page
