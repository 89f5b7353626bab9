#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Loads HTML pages in headless Chromium, saves a screenshot of each next to it
# (DIR/screenshots/NAME.png) and fails when a page logs anything to the console (an
# uncaught error, a console.error, a refused load) or names a network resource.
#
#   scripts/report-check.sh PAGE.html...
# Exit status: 0 every page clean; 1 a page logged or reached out; 2 no Chromium.
set -u
chromium=${CHROMIUM:-/usr/bin/chromium}
[[ -x $chromium ]] || { echo "report-check: $chromium not found" >&2; exit 2; }
status=0
for page in "$@"; do
    dir=$(cd "$(dirname "$page")" && pwd)
    name=$(basename "$page" .html)
    mkdir -p "$dir/screenshots"
    profile=$(mktemp -d)
    log=$profile/chromium.log
    # Chromium logs every console message of the page as a line with ":CONSOLE".
    timeout 120 "$chromium" --headless --no-sandbox --disable-gpu \
        --disable-background-networking --disable-component-update --disable-sync \
        --no-first-run --user-data-dir="$profile" --enable-logging=stderr --v=0 \
        --window-size=1280,1600 --screenshot="$dir/screenshots/$name.png" \
        "file://$dir/$name.html" >"$log" 2>&1
    if grep -q ':CONSOLE' "$log"; then
        echo "report-check: $page: console: $(grep -m1 ':CONSOLE' "$log" | sed 's/^.*CONSOLE[^]]*] //')"
        status=1
    elif [[ ! -s $dir/screenshots/$name.png ]]; then
        echo "report-check: $page: no screenshot ($(tail -1 "$log"))"
        status=1
    elif grep -Eq '(src|href)="(https?:)?//' "$page"; then
        echo "report-check: $page: names a network resource"
        status=1
    else
        echo "report-check: $page: no console messages; screenshot $dir/screenshots/$name.png"
    fi
    rm -rf "$profile"
done
exit $status
