#!/usr/bin/env bash
# Runs the given test programs, then (unless --unit-only) every integration
# script tests/it_*.sh. Prints one line per test and a summary; exits non-zero
# when any test failed.
set -u
unit_only=0
if [ "${1:-}" = "--unit-only" ]; then unit_only=1; shift; fi
here=$(cd "$(dirname "$0")" && pwd)
export BUILD="${BUILD:-build}"
failed=()
passed=0
run() {
    local name=$1; shift
    local start end log
    start=$(date +%s)
    log=$(mktemp)
    if "$@" >"$log" 2>&1; then
        end=$(date +%s)
        echo "PASS  $name  ($((end - start))s)"
        passed=$((passed + 1))
    else
        end=$(date +%s)
        echo "FAIL  $name  ($((end - start))s)"
        sed 's/^/      /' "$log" | tail -n 60
        failed+=("$name")
    fi
    rm -f "$log"
}
# TEST_WRAPPER (e.g. a valgrind command line) runs each test program under it.
for t in "$@"; do
    # shellcheck disable=SC2086
    run "$(basename "$t")" ${TEST_WRAPPER:-} "$t"
done
if [ "$unit_only" -eq 0 ]; then
    for s in "$here"/it_*.sh; do
        [ -e "$s" ] || continue
        run "$(basename "$s")" bash "$s"
    done
fi
echo "tests: $passed passed, ${#failed[@]} failed${failed:+: ${failed[*]}}"
[ "${#failed[@]}" -eq 0 ]
