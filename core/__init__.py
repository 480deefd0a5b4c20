"""Core engine: loads models from models/ and runs generations. Never imports Gradio."""
