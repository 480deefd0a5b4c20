"""End-to-end tests: the running app driven in headless Chromium, as a person uses it."""
