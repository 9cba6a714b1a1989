#!/usr/bin/env bash
# The one test command (`npm test`, also what .ci/run calls): lint, typecheck, build, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
echo "== lint";      npx eslint . --max-warnings 0
echo "== typecheck"; npx tsc -p tsconfig.json --noEmit
echo "== build";     npm run --silent build
echo "== tests";     npx vitest run "$@"
