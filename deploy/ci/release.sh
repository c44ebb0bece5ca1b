#!/usr/bin/env bash
# Deploy a release from any CI system: enqueue it, follow it to its verdict, exit with it.
#
#   CONVEYOR_REDIS_URL=rediss://... deploy/ci/release.sh release.yaml [release-summary.json]
#
# Exit codes are Conveyor's: 0 succeeded, 1 failed or rolled back, 5 cancelled, 2 the release
# file is invalid (nothing was enqueued), 3 Redis or the workers cannot be reached. The verdict,
# with one line per service, is written as JSON to the second argument (default
# release-summary.json) for the CI system to keep as an artifact.
set -uo pipefail

release_file=${1:?usage: release.sh RELEASE.yaml [SUMMARY.json]}
summary=${2:-release-summary.json}

conveyor release -f "$release_file" --json >"$summary"
code=$?
if [ -s "$summary" ]; then
  # A line per service for the job log; the JSON stays the record.
  python3 - "$summary" <<'PY'
import json, sys
release = json.load(open(sys.argv[1]))
print(f"release {release['id']} ({release.get('name') or 'unnamed'}): {release['state']}")
for d in release["deployments"]:
    print(f"  wave {d['wave']}  {d['cluster']}/{d['service']}  {d['state']}  {d['reason'] or ''}")
PY
fi
exit "$code"
