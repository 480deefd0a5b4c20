"""Gradio web UI: one module per tab, building requests and rendering engine events."""
