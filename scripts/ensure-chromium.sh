#!/bin/sh
# Makes sure a headless-capable Chromium is installed (Debian's `chromium` package) and prints the
# path of its executable on the last line of stdout. The inspector's browser test runs it before
# launching playwright-core, which ships no browser of its own.
#
# Exit status: 0 with the path printed, or 1 with the reason on stderr (the test then fails with
# that reason; it never skips).
set -eu

find_chromium() {
  for candidate in "${NOATUN_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/lib/chromium/chromium; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if path=$(find_chromium); then
  echo "$path"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: no chromium found and no apt-get to install it; install Chromium and set NOATUN_CHROMIUM to its path" >&2
  exit 1
fi

# Installing needs root; `sudo -n` is tried so a developer's machine never blocks on a password.
if [ "$(id -u)" = "0" ]; then
  run() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  run() { sudo -n "$@"; }
else
  echo "ensure-chromium: chromium is missing and installing it needs root (run: apt-get install -y chromium)" >&2
  exit 1
fi

echo "ensure-chromium: installing chromium with apt-get (once)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! run apt-get install -y --no-install-recommends chromium >&2; then
  # A stale package index is the usual cause; refresh it and try once more.
  run apt-get update >&2
  run apt-get install -y --no-install-recommends chromium >&2
fi

if path=$(find_chromium); then
  echo "$path"
  exit 0
fi
echo "ensure-chromium: apt-get finished but no chromium executable was found" >&2
exit 1
