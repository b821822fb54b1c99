#!/usr/bin/env bash
# Installs Chromium (Debian package chromium) when /usr/bin/chromium is missing: the dashboard's
# browser tests drive it through Playwright's executable_path, so no browser is downloaded.
# Nothing is started here.
set -u
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Chromium (apt-get install chromium)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || echo "warning: could not install chromium; the browser tests will be skipped" >&2
else
  echo "note: no /usr/bin/chromium and no root apt-get; the browser tests will be skipped" >&2
fi
exit 0
