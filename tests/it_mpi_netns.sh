#!/usr/bin/env bash
# Data-parallel training over MPI between two network namespaces
# (tests/netns_lib.sh: namespaces joined by veth pairs on a bridge), as on
# two machines:
#
#   $NS_A  10.77.0.1  mpirun, rank 0 (bound on 10.77.0.1), loader, evaluator
#   $NS_B  10.77.0.2  rank 1 (bound on 10.77.0.2), started by mpirun's agent
#   $NS_C  10.77.0.3  two augmenters, each pushing to both ranks
#
# mpirun reads a host file naming the two addresses (one slot each) and
# starts its daemon on 10.77.0.2 through an rsh agent (--mca plm_rsh_agent)
# that this script writes: instead of ssh it runs the daemon's command in the
# namespace that holds the address. MPI talks TCP on the veth subnet only
# (--mca btl self,tcp, btl_tcp_if_include and oob_tcp_if_include
# 10.77.0.0/24). SimCLR, width 4, --sync-bn, STEPS steps on N Fashion-MNIST
# images (2.5 epochs) from a loader that streams on with --exactly-once.
# Checks: mpirun exits 0 at step STEPS; rank 0 runs in $NS_A and rank 1 in
# $NS_B (their network namespaces, seen while they train); steps 1..STEPS
# once each; epoch 0 complete with N distinct samples (more than 2 epochs'
# worth trained, and the loader opens a third only once the first is
# acknowledged in full), no epoch with more, and as many distinct samples in
# all epochs as the steps hold (none trained twice, by one rank or by two);
# the summary names 2 ranks; rank 1 trained every step; the bytes rank 1 sent
# out of $NS_B's veth cover at least half of the collectives' payload (the
# MPI traffic crossed the link, not shared memory); STOP ends the loader, the
# augmenters and the evaluator, which evaluated the last checkpoint; nothing
# is left behind (processes, namespaces).
# Needs root (or user namespaces: it then runs itself inside `unshare --user
# --map-root-user --net --mount`); when no namespace can be made at all (a
# missing privilege) it prints SKIP and exits 77.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/netns_lib.sh"
if ! netns_available; then
    netns_reexec_unshared "$0" "$@"
    echo "SKIP: cannot create network namespaces here (not root, and no user namespaces)"
    exit 77
fi
. "$here/lib.sh"
trap 'netns_cleanup; cleanup' EXIT

LOADER="$BUILD/bin/loader"
AUG="$BUILD/bin/augmenter"
TRAINER="$BUILD/bin/trainer"
EVAL="$BUILD/bin/evaluator"
N=1024
BATCH=64
STEPS=40           # 2.5 epochs: the loader streams on
FULL=1             # epochs complete by then: the loader keeps at most 2 epochs open
HOST_B=10.77.0.2
SUBNET=10.77.0.0/24
# Short queues, and a loader that streams on: the ranks never starve at the
# end of the data nor wait on Samples queued for seconds, so the loader has
# no reason to send anything twice (re-sending is it_faults's and it_mpi's).
LOADER_HWM=32      # Samples per augmenter connection
TRAINER_HWM=4      # ViewBatches per rank

require_built "$LOADER" "$AUG" "$TRAINER" "$EVAL"
command -v mpirun >/dev/null || { echo "FAIL: mpirun not found: make deps installs openmpi-bin"; exit 1; }
[ -e "$FMNIST/train-images-idx3-ubyte.gz" ] || { echo "FAIL: $FMNIST missing (make deps)"; exit 1; }

[ -n "${SSLP_NETNS_UNSHARED:-}" ] && echo "   (not root: running inside unshare --user --map-root-user --net --mount)"
if netns_setup; then
    ok "namespaces $NS_A ($NETNS_HOST_A), $NS_B ($HOST_B), $NS_C (10.77.0.3) joined by a bridge"
else
    fail "cannot set up the namespaces and veth links"
    exit 1
fi

# mpirun's remote shell, logging each daemon it starts
agent="$tmp/netns_agent.sh"
netns_mpi_agent "$agent" "$HOST_B" "$tmp/agent.log"
printf '%s slots=1\n%s slots=1\n' "$NETNS_HOST_A" "$HOST_B" >"$tmp/hosts"
# shellcheck disable=SC2054  # self,tcp is one value
mpi_args=(-np 2 --hostfile "$tmp/hosts" --mca plm_rsh_agent "$agent" --mca btl self,tcp
    --mca btl_tcp_if_include "$SUBNET" --mca oob_tcp_if_include "$SUBNET" --mca mpi_yield_when_idle 1
    --mca orte_tmpdir_base "$tmp")   # session folders: a user namespace's root cannot write /tmp/ompi.*
[ "$(id -u)" -eq 0 ] && mpi_args+=(--allow-run-as-root)

# the namespaces are private: the default ports
lp=$NETNS_PORT; tp=$((NETNS_PORT + 1)); ep=$((NETNS_PORT + 2)); cp=$((NETNS_PORT + 3))
ep_t="tcp://$NETNS_HOST_A:$tp,tcp://$HOST_B:$tp"
ep_c="tcp://$NETNS_HOST_A:$cp"
tx_bytes() { ip netns exec "$NS_B" cat /sys/class/net/eth0/statistics/tx_bytes; }
tx0=$(tx_bytes)

timeout 120 ip netns exec "$NS_A" "$EVAL" --bind "tcp://$NETNS_HOST_A:$ep" --control "$ep_c" --out "$tmp/eval" \
    --max-train 500 --max-test 200 --label-fraction 1 --no-baselines --attention 0 --classmap 0 \
    --align-items 100 >"$tmp/eval.log" 2>&1 &
eval_pid=$!
timeout 90 ip netns exec "$NS_A" mpirun "${mpi_args[@]}" "$TRAINER" --method simclr --arch resnet-mini --width 4 \
    --batch "$BATCH" --steps "$STEPS" --dataset-size "$N" --seed 5 --sync-bn --hwm "$TRAINER_HWM" \
    --bind "$ep_t" --control "$ep_c" --evaluator "tcp://$NETNS_HOST_A:$ep" --out "$tmp/run" --quiet >"$tmp/mpi.out" 2>"$tmp/mpi.err" &
mpi_pid=$!
timeout 120 ip netns exec "$NS_A" "$LOADER" --data "$FMNIST" --limit "$N" --epochs 0 --exactly-once \
    --hwm "$LOADER_HWM" --seed 5 --bind "tcp://$NETNS_HOST_A:$lp" --control "$ep_c" --quiet >"$tmp/loader.log" 2>&1 &
loader_pid=$!
aug_pids=()
for a in 1 2; do
    timeout 120 ip netns exec "$NS_C" "$AUG" --connect "tcp://$NETNS_HOST_A:$lp" --push "$ep_t" --control "$ep_c" \
        --workers 1 --batch 16 --size 28 --channels 1 --seed "$a" --quiet >"$tmp/aug$a.log" 2>&1 &
    aug_pids+=($!)
done

# while the ranks train: the namespace of each
for ((i = 0; i < 600; i++)); do
    [ "$(steps_done "$tmp/run")" -ge 2 ] && break
    kill -0 "$mpi_pid" 2>/dev/null || break
    sleep 0.1
done
ns_of=()
for p in $(pgrep -x trainer); do
    tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -qx "$tmp/run" || continue
    r=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
    [ -n "$r" ] && ns_of[r]=$(ip netns identify "$p" 2>/dev/null)
done
[ "${ns_of[0]:-}" = "$NS_A" ] && [ "${ns_of[1]:-}" = "$NS_B" ] &&
    ok "rank 0 trains in $NS_A, rank 1 in $NS_B" ||
    { fail "ranks' namespaces: rank 0 in '${ns_of[0]:-?}', rank 1 in '${ns_of[1]:-?}'"; tail -n 5 "$tmp/mpi.err"; }

wait "$mpi_pid"; rc=$?
tx=$(($(tx_bytes) - tx0))
[ "$rc" -eq 0 ] && ok "mpirun -np 2 over two namespaces exited 0" || { fail "mpirun exit $rc"; tail -n 20 "$tmp/mpi.err"; }
grep -q "^$HOST_B: .*orted" "$tmp/agent.log" 2>/dev/null && ok "mpirun started its daemon on $HOST_B through the agent" ||
    { fail "the agent did not start a daemon on $HOST_B"; cat "$tmp/agent.log"; }
"$PY" - "$tmp/run/metrics.jsonl" "$N" "$FULL" "$STEPS" "$BATCH" <<'EOF' &&
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n, full, steps, batch = (int(a) for a in sys.argv[2:6])
steprows = [r for r in rows if "loss" in r]
records = [r for r in rows if r.get("record") == "epoch"]
assert [r["step"] for r in steprows] == list(range(1, steps + 1)), [r["step"] for r in steprows]
epochs = sorted(r["epoch"] for r in records)
assert epochs == list(range(len(epochs))) and len(epochs) > full, records
for r in records:
    assert r["distinct"] <= n, r
    if r["epoch"] < full:
        assert r["complete"] and r["distinct"] == n and r["expected"] == n, r
# every trained slot a distinct sample: none trained twice, by one rank or by two
assert sum(r["distinct"] for r in records) == steps * batch, (sum(r["distinct"] for r in records), records)
EOF
    ok "steps 1..$STEPS once each, epoch 0 complete with $N distinct samples, none trained twice" ||
    { fail "epoch records"; grep '"record"' "$tmp/run/metrics.jsonl"; }
comm=$("$PY" - "$tmp/mpi.out" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
assert len(lines) == 1, lines            # one summary: rank 0's
s = json.loads(lines[0])
assert s["end"] == "done" and s["ranks"] == 2 and s["comm_bytes_per_step"] > 0, s
print(int(s["comm_bytes_per_step"] * s["step"]), round(s["comm_s_per_step"] * 1e3, 1))
EOF
) && ok "the summary (rank 0 alone) names 2 ranks, ${comm#* } ms per step in collectives" ||
    { fail "summary"; cat "$tmp/mpi.out"; }
grep -qF "rank 1 of 2: listening on tcp://$HOST_B:$tp" "$tmp/mpi.err" &&
    ok "rank 1 bound the second endpoint of --bind, on $HOST_B" || { fail "rank 1's endpoint"; grep "trainer.1" "$tmp/mpi.err"; }
grep -q "trainer.1: rank 1: $STEPS steps" "$tmp/mpi.err" && ok "rank 1 trained all $STEPS steps" ||
    { fail "rank 1's line"; grep "trainer.1" "$tmp/mpi.err" | tail -n 5; }
payload=${comm%% *}
[ -n "$payload" ] && [ "$tx" -ge $((payload / 2)) ] &&
    ok "$NS_B's veth sent $((tx / 1000)) kB, collectives' payload $((payload / 1000)) kB" ||
    fail "$NS_B's veth sent $tx bytes, less than half the collectives' payload (${payload:-?} bytes)"

echo "   $(grep -ho 're-sent [0-9]* Sample(s)' "$tmp/loader.log") by the loader, $(grep -ho '[0-9]* duplicate samples' "$tmp/mpi.err") dropped by rank 0"
stopped=1
wait_s=30
[ "$rc" -eq 0 ] || wait_s=1   # no STOP was sent: netns_cleanup ends them
for p in "$loader_pid" "${aug_pids[@]}" "$eval_pid"; do gone "$p" "$wait_s" || stopped=0; done
[ "$stopped" -eq 1 ] && ok "STOP ended the loader, both augmenters and the evaluator" ||
    { fail "a stage still runs after STOP"; tail -n 3 "$tmp/loader.log" "$tmp"/aug*.log "$tmp/eval.log"; }
grep -q "\"step\": *$STEPS\b" "$tmp/eval/eval.jsonl" 2>/dev/null &&
    ok "the evaluator evaluated the step-$STEPS checkpoint" || { fail "no evaluation of step $STEPS"; tail -n 5 "$tmp/eval.log"; }
for p in "$eval_pid" "$loader_pid" "${aug_pids[@]}"; do wait "$p" 2>/dev/null; done

left=0
for ns in "$NS_A" "$NS_B" "$NS_C"; do left=$((left + $(ip netns pids "$ns" 2>/dev/null | wc -l))); done
[ "$left" -eq 0 ] && ok "no process left in the namespaces" || fail "$left process(es) left in the namespaces"
netns_cleanup
ip netns list 2>/dev/null | grep -q "$NETNS_PREFIX" && fail "namespaces left: $(ip netns list | grep "$NETNS_PREFIX")" ||
    ok "namespaces deleted"

echo "it_mpi_netns: $failures failure(s)"
[ "$failures" -eq 0 ]
