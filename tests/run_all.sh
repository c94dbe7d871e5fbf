#!/usr/bin/env bash
# Runs the given test programs, then (unless --unit-only) every integration
# script tests/it_*.sh. Prints one line per test and a summary; exits non-zero
# when any test failed. A test that exits with status 77 could not run here
# (only a missing privilege allows that, never a missing file): it is counted
# as skipped, with the reason from its "SKIP: ..." line, never as passed.
set -u
unit_only=0
if [ "${1:-}" = "--unit-only" ]; then unit_only=1; shift; fi
here=$(cd "$(dirname "$0")" && pwd)
export BUILD="${BUILD:-build}"
SKIP_STATUS=77
failed=()
skipped=()
passed=0
run() {
    local name=$1; shift
    local start end log
    start=$(date +%s)
    log=$(mktemp)
    local rc=0
    "$@" >"$log" 2>&1 || rc=$?
    end=$(date +%s)
    if [ "$rc" -eq 0 ]; then
        echo "PASS  $name  ($((end - start))s)"
        passed=$((passed + 1))
    elif [ "$rc" -eq "$SKIP_STATUS" ]; then
        local why
        why=$(grep -m1 '^SKIP: ' "$log" | sed 's/^SKIP: //')
        echo "SKIP  $name  (${why:-no reason given})"
        skipped+=("$name: ${why:-no reason given}")
    else
        echo "FAIL  $name  ($((end - start))s, exit status $rc)"
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
for s in "${skipped[@]}"; do echo "skipped: $s"; done
[ "${#failed[@]}" -eq 0 ] || echo "failed: ${failed[*]}"
echo "tests: $passed passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
[ "${#failed[@]}" -eq 0 ]
