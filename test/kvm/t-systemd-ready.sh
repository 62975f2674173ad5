#!/bin/bash
# The systemd units' readiness protocol (READY=1 only once the QMP socket
# accepts, STOPPING=1, exit 0), run in the KVM suite since it boots a guest.
set -euo pipefail
exec bash "$VMM_SRC/test/systemd/t-ready.sh" "$VMM_BUILD"
