#!/usr/bin/env bash
# One command: install everything, execute every notebook on the `tiny` profile, build the book.
# Extra arguments go to `kdlib reproduce` (e.g. --profile small, --data-root PATH).
source "$(dirname "$0")/env.sh"
kdlib reproduce --profile tiny "$@"
