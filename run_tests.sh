#!/usr/bin/env bash
# Sets up the project-local environment with test tools (first run only) and runs lint and the test suite.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh requirements-test.txt
bash scripts/install_chromium.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
