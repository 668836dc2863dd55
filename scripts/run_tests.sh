#!/usr/bin/env bash
# Run the whole suite; GUI tests run under a virtual screen (Xvfb) when one exists, else they are skipped loudly.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy
# the tests spread over TEST_WORKERS pytest processes (pytest-xdist; default 2, this machine's cores; 0 runs them in
# this one); the Ray tests keep to one worker (--dist loadgroup, their xdist_group mark)
set -- -n "${TEST_WORKERS:-2}" --dist loadgroup "$@"

"$PY" -m ruff check core explorer scripts tests || exit 1
"$PY" -m mypy || exit 1  # the packages and scripts ([tool.mypy] in pyproject.toml)

gui_note=""
if [ -n "${DISPLAY:-}" ]; then
    "$PY" -m pytest "$@"; rc=$?
elif command -v xvfb-run >/dev/null 2>&1; then
    xvfb-run -a -s "-screen 0 1280x1024x24" "$PY" -m pytest "$@"; rc=$?
else
    "$PY" -m pytest -m "not gui" "$@"; rc=$?
    gui_note="GUI TESTS SKIPPED: no Xvfb (install xvfb and Mesa, as .ci/run does) and no DISPLAY."
fi
if [ -n "$gui_note" ]; then
    echo "=================================================================="
    echo "  $gui_note"
    echo "=================================================================="
fi
exit $rc
