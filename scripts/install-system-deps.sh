#!/usr/bin/env bash
# Debian packages the project uses: WordNet 3.0 (METEOR in evaluation), Chromium (tests render
# the moderator report headless, and drive the web console through Playwright with this browser)
# and Caddy (the TLS proxy of deploy/compose.webhook.yaml; a test runs it in front of the bot).
# Needs root or passwordless sudo; otherwise says what to install.
set -euo pipefail
PKGS=(wordnet-base wordnet-sense-index chromium caddy)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: ${PKGS[*]}"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "WARNING: cannot install ${missing[*]} (not root, no sudo)." >&2
  echo "         Install them with: sudo apt-get install ${missing[*]}" >&2
  echo "         Tests that need them will be skipped with that reason." >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
