#!/usr/bin/env bash
# Look at a report's figures as a browser shows them: each SVG under a directory rendered by headless Chromium
# into a PNG beside it (apt-get install chromium).   bash dev/screenshot.sh out/quick
set -euo pipefail
dir=${1:-out/quick}
for svg in "$dir"/*.svg; do
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=740,380 \
    --screenshot="${svg%.svg}.png" "file://$(realpath "$svg")" 2>/dev/null
  echo "${svg%.svg}.png"
done
