#!/usr/bin/env bash
# The project's test command (the README's): unit tests first, then integration tests with real
# brokers and the engine process. Each invocation stands alone so that a failure names its layer.
set -euo pipefail
cd "$(dirname "$0")/.."
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
python3 -m pytest tests/unit -q
python3 -m pytest tests/integration -q
