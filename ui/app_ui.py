"""Builds the whole page: one tab per mode, each bound to the core engine through Services."""

from __future__ import annotations

import gradio as gr

from ui.services import Services
from ui.txt2img_tab import build_txt2img_tab

CSS = """
.tool-button { max-width: 44px; min-width: 40px !important; }
.job-progress { position: relative; height: 1.6em; border-radius: 6px; background: var(--block-background-fill);
  border: 1px solid var(--border-color-primary); overflow: hidden; }
.job-progress-bar { position: absolute; inset: 0 auto 0 0; background: var(--color-accent-soft);
  transition: width .2s; }
.job-progress-text { position: relative; padding: 0 .5em; font-size: var(--text-sm); line-height: 1.6em; }
.job-notice { font-size: var(--text-sm); color: var(--body-text-color-subdued); }
.job-done { font-size: var(--text-sm); }
"""

# A1111's habit: Ctrl+Enter (Cmd+Enter) in a prompt box presses that tab's Generate button.
JS = """
() => {
  document.addEventListener('keydown', (e) => {
    if (!(e.ctrlKey || e.metaKey) || e.key !== 'Enter') return;
    const box = e.target.closest('[id$="_prompt"]');
    if (!box) return;
    const button = document.getElementById(box.id.replace(/_(neg_)?prompt$/, '') + '_generate');
    if (button) { e.preventDefault(); button.click(); }
  });
}
"""


def build_ui(services: Services) -> gr.Blocks:
    with gr.Blocks(title="SD Studio") as page, gr.Tabs(), gr.Tab("txt2img", id="txt2img"):
        build_txt2img_tab(services)
    return page
