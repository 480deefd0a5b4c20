#!/usr/bin/env bash
# Sets up the project-local environment (first run only) and starts the web UI; extra flags go to app.py.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh requirements.txt
exec .venv/bin/python app.py "$@"
