#!/usr/bin/env bash
# Installs what nmdose needs on a fresh Debian bookworm machine: Debian packages (Orthanc 1.10 + Python plugin 4.0
# + PostgreSQL index plugin, DCMTK, PostgreSQL 15, Lua 5.1) and the project's .venv built on Debian's python3,
# which is the interpreter the Orthanc Python plugin embeds. Idempotent: does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(orthanc orthanc-python orthanc-postgresql dcmtk postgresql postgresql-client
              orthanc-dicomweb  # DICOMweb for the OHIF viewer: docs/viewer.md
              python3 python3-venv python3-dev lua5.1 curl ca-certificates procps
              chromium chromium-driver fonts-nanum  # browser tests of the web pages in tests/e2e;
                                                    # fonts-nanum: Korean labels readable in their screenshots
              nginx  # the HTTPS reverse proxy in front of the research PACS: nmdose proxy, docs/security.md
              rsyslog)  # tests: a real syslog receiver for the ATNA audit messages (docs/audit.md)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  # The Debian Orthanc and PostgreSQL services must not start: the stack runs its own instances on its own ports.
  guard_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    guard_added=1
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ "$guard_added" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi
# In case a service was started anyway (policy-rc.d present but permissive): stop Debian's own instances.
if pgrep -x Orthanc >/dev/null 2>&1 && [ -f /var/run/orthanc/orthanc.pid ] 2>/dev/null; then
  $SUDO service orthanc stop >/dev/null 2>&1 || true
fi

stamp=.venv/.nmdose-installed
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.base_prefix != "/usr")'; then
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi
# The OHIF viewer (docs/viewer.md): @ohif/app's built dist/ from the npm registry, pinned and integrity-checked,
# into the git-ignored var/ohif/ (nothing when that version is there). npm: Debian's when none is installed.
if ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: installing Debian package npm (for the OHIF viewer)"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
fi
.venv/bin/python -m nmdose.web.viewer_dist install
echo "install-deps: ok ($(Orthanc --version 2>/dev/null | head -1), $(.venv/bin/python --version))"
