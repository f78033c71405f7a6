#!/usr/bin/env bash
# One command: install everything and run the test suite (the `tiny` book run included).
# Extra arguments go to pytest (e.g. -m "not slow" for the quick tests only).
source "$(dirname "$0")/env.sh"
python -m pytest "$@"
