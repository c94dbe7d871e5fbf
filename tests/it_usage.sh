#!/usr/bin/env bash
# Every executable in $BUILD/bin, and run.sh, handles its command line alike:
#  - --help exits 0 with the usage on stdout (and nothing on stderr);
#  - an unknown flag, a flag missing its value, a non-numeric value for a
#    numeric option and an out-of-range value (or "none" for a socket the
#    program needs) each exit 2, print nothing on stdout, and print a message
#    on stderr that starts with "PROGRAM: ", names the flag and points to --help;
#  - the default endpoints in each stage's --help and the default port base
#    in run.sh --help are those of cli/defaults.h.
# The cases of each program are in the table below; a program in $BUILD/bin
# without a row fails the test (add its row).
set -u
. "$(dirname "$0")/lib.sh"

# program | arguments before the flags | non-numeric values | out-of-range values | flag given last,
# without its value ("-" when the program has no such option; cases separated by commas)
TABLE='
loader    |            | --epochs abc, --seed x, --cache-mb 1.5, --max-side abc, --hold-out x | --channels 7, --threads 0, --hwm 0, --limit -1, --max-pixels 0, --bind none | --data
augmenter |            | --workers abc, --seed abc, --size abc, --batch x      | --size 100000, --workers 0, --channels 2, --batch 0, --push none | --connect
trainer   |            | --batch abc, --steps x, --ckpt-every abc, --tau abc, --lr x, --minutes x | --width 0, --tau -1, --steps 99999999999999999999, --minutes 0, --bind none | --batch
evaluator |            | --batch abc, --knn-k abc, --max-train x, --seed abc, --finetune-epochs abc | --test-fraction 1.5, --max-pending 0, --label-fraction 2, --finetune 2, --finetune-per-class 0, --after-stop some, --feature-views two, --bind none | --out
nntool    | init       | --width abc, --train-steps x, --seed abc             | --width 0, --train-steps -3 | --net
keygen    |            | -                                                    | - | --client
run.sh    | --no-build | --epochs abc, --width x, --seed abc, --minutes x     | --augmenters 0, --channels 2, --port-base 70000, --trainer rust, --method pretext, --epochs 0, --minutes 0 | --data
'

trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; echo "${s%"${s##*[![:space:]]}"}"; }

# expect NAME WANT_RC FLAG PROGRAM ARGS...: runs PROGRAM (no stdin, 20 s at
# most); WANT_RC 0 wants usage on stdout, 2 wants an empty stdout and on
# stderr a message "PROGRAM: ..." naming FLAG and pointing to --help.
expect() {
    local name=$1 want=$2 flag=$3; shift 3
    timeout 20 "$@" </dev/null >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    local why=""
    if [ "$rc" -ne "$want" ]; then why="exit $rc"
    elif [ "$want" -eq 0 ]; then
        grep -qi "usage" "$tmp/out" || why="no usage on stdout"
        [ -s "$tmp/err" ] && why="${why:+$why, }stderr not empty"
    else
        [ -s "$tmp/out" ] && why="stdout not empty"
        grep -qF -- "${flag#--}" "$tmp/err" || why="${why:+$why, }stderr does not name $flag"
        local prog_name
        prog_name=$(basename "$1")
        head -n 1 "$tmp/err" | grep -q "^$prog_name: " || why="${why:+$why, }stderr does not start with '$prog_name: '"
        grep -qF -- "--help" "$tmp/err" || why="${why:+$why, }stderr does not point to --help"
    fi
    if [ -z "$why" ]; then
        ok "$name: exit $want${flag:+, names $flag}: $(head -n 1 "$tmp/$([ "$want" -eq 0 ] && echo out || echo err)" | cut -c 1-110)"
    else
        fail "$name: $why (want exit $want)"
        sed 's/^/    stdout: /' "$tmp/out" | head -n 3
        sed 's/^/    stderr: /' "$tmp/err" | head -n 5
    fi
}

# check PROGRAM_PATH NAME PREFIX NONNUM RANGE MISSING
check() {
    local prog=$1 name=$2 prefix=$3 nonnum=$4 range=$5 missing=$6
    local pre=()
    # shellcheck disable=SC2206
    [ -n "$prefix" ] && pre=($prefix)
    if [ "$name" = nntool ]; then
        expect "$name --help" 0 "" "$prog" --help
    else
        expect "$name --help" 0 "" "$prog" "${pre[@]}" --help
    fi
    expect "$name unknown flag" 2 --no-such-flag "$prog" "${pre[@]}" --no-such-flag
    local case
    while IFS= read -r case; do
        case=$(trim "$case")
        # shellcheck disable=SC2086
        [ "$case" = - ] || expect "$name $case" 2 "${case%% *}" "$prog" "${pre[@]}" $case
    done < <(printf '%s,%s\n' "$nonnum" "$range" | tr ',' '\n')
    [ "$missing" = - ] || expect "$name $missing (no value)" 2 "$missing" "$prog" "${pre[@]}" "$missing"
}

listed=" "
while IFS='|' read -r name prefix nonnum range missing; do
    name=$(trim "$name")
    [ -n "$name" ] || continue
    listed="$listed$name "
    if [ "$name" = run.sh ]; then prog="$root/run.sh"; else prog="$BUILD/bin/$name"; fi
    [ -x "$prog" ] || { fail "$name is not built (run make)"; continue; }
    check "$prog" "$name" "$(trim "$prefix")" "$(trim "$nonnum")" "$(trim "$range")" "$(trim "$missing")"
done <<<"$TABLE"

# SimCLR's loss settings with a method that has no contrastive loss
expect "trainer --method rotnet --loss dcl" 2 --loss "$BUILD/bin/trainer" --method rotnet --loss dcl
expect "trainer --method supervised --tau 0.2" 2 --tau "$BUILD/bin/trainer" --method supervised --tau 0.2

# The default endpoints: one definition (cli/defaults.h), shown alike by
# every stage's --help and by run.sh --help.
default_of() { sed -n "s/^#define $1 *\([0-9][0-9]*\|\"[^\"]*\"\).*/\1/p" "$root/cli/defaults.h" | tr -d '"'; }
host=$(default_of CLI_HOST)
declare -A port=()
for p in LOADER TRAINER EVALUATOR CONTROL; do port[$p]=$(default_of "CLI_PORT_$p"); done
if [ -z "$host" ] || [ -z "${port[LOADER]}" ] || [ -z "${port[CONTROL]}" ]; then
    fail "cannot read the defaults from cli/defaults.h"
else
    # help_shows NAME TEXT...: NAME --help (run.sh: with --no-build) shows every TEXT
    help_shows() {
        local name=$1 prog=$BUILD/bin/$1; shift
        [ "$name" = run.sh ] && prog=$root/run.sh
        "$prog" --help >"$tmp/help" 2>/dev/null
        local text missing=""
        for text in "$@"; do grep -qF -- "$text" "$tmp/help" || missing="$missing '$text'"; done
        if [ -z "$missing" ]; then ok "$name --help shows the default endpoints ($*)"
        else fail "$name --help does not show$missing (cli/defaults.h)"; fi
    }
    ep() { echo "tcp://$host:${port[$1]}"; }
    help_shows loader "$(ep LOADER)" "$(ep CONTROL)"
    help_shows augmenter "$(ep LOADER)" "$(ep TRAINER)" "$(ep CONTROL)"
    help_shows trainer "$(ep TRAINER)" "$(ep CONTROL)" "$(ep EVALUATOR)"
    help_shows evaluator "$(ep EVALUATOR)"
    help_shows run.sh "(default $host)" "(default ${port[LOADER]})" ":${port[TRAINER]} " ":${port[CONTROL]} "
    [ $((port[TRAINER] - port[LOADER])) -eq 1 ] && [ $((port[EVALUATOR] - port[LOADER])) -eq 2 ] &&
        [ $((port[CONTROL] - port[LOADER])) -eq 3 ] && ok "the default ports follow run.sh --port-base's order" ||
        fail "the default ports are not loader P, trainer P+1, evaluator P+2, control P+3 (run.sh --port-base)"
fi

n_bin=0
for prog in "$BUILD"/bin/*; do
    [ -x "$prog" ] || continue
    n_bin=$((n_bin + 1))
    name=$(basename "$prog")
    case "$listed" in *" $name "*) ;; *)
        fail "$name: no row in tests/it_usage.sh's table (add its numeric options)"
        check "$prog" "$name" "" - - - ;;
    esac
done
[ "$n_bin" -gt 0 ] || fail "nothing in $BUILD/bin (run make)"

# The test and benchmark programs in $BUILD/tools answer --help too: usage on
# stdout, exit 0.
n_tools=0
for prog in "$BUILD"/tools/*; do
    [ -x "$prog" ] || continue
    n_tools=$((n_tools + 1))
    name=$(basename "$prog")
    rc=0
    "$prog" --help >"$tmp/help" 2>/dev/null </dev/null || rc=$?
    if [ "$rc" -eq 0 ] && grep -q "usage" "$tmp/help"; then ok "tools/$name --help"
    else fail "tools/$name --help: exit $rc, $(wc -c <"$tmp/help") bytes of usage on stdout"; fi
done
[ "$n_tools" -gt 0 ] || fail "nothing in $BUILD/tools (run make)"

if [ "$failures" -ne 0 ]; then
    echo "it_usage: $failures failures"
    exit 1
fi
echo "it_usage: all passed ($n_bin programs, run.sh and $n_tools tools)"
