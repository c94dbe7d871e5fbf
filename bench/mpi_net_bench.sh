#!/usr/bin/env bash
# Data-parallel training over a slow link: the two MPI ranks of the
# trainer's SimCLR step (build/tools/mpi_step_bench, resnet-mini width 16,
# global batch 256 of 32x32x3, one thread each) in two network namespaces
# joined by veth (tests/netns_lib.sh), every packet between them held to
# MPI_NET_RATE (default 1gbit, tc's token bucket on both ends), Open MPI over
# TCP. The gradient sum started range by range during the backward (the
# trainer's way) against one sum after it (--no-overlap), in turns,
# MPI_NET_REPEAT times (default 3). One JSON line per run, then one with the
# median of each and their ratio; every line names the rate, the OpenBLAS
# kernel and the CPU. Both ranks share this machine's cores, so a step
# computes at about half speed: the ratio is a lower bound of what separate
# machines would see. Needs root or user namespaces; prints a "skipped" line
# otherwise. Options: MPI_NET_RATE, MPI_NET_REPEAT, MPI_NET_STEPS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
. "$here/tests/netns_lib.sh"
if ! netns_available; then
    netns_reexec_unshared "$here/bench/mpi_net_bench.sh" "$@"
    echo '{"bench":"mpi_net","skipped":"cannot create network namespaces (not root, no user namespaces)"}'
    exit 0
fi
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$here/$BUILD" ;; esac
rate=${MPI_NET_RATE:-1gbit}
repeat=${MPI_NET_REPEAT:-3}
steps=${MPI_NET_STEPS:-5}
for f in "$BUILD/tools/mpi_step_bench" "$BUILD/tools/nn_bench"; do
    [ -x "$f" ] || { echo "mpi_net_bench: $f is not built (make; MPI needs libopenmpi-dev)" >&2; exit 1; }
done
command -v mpirun >/dev/null || { echo "mpi_net_bench: mpirun not found (make deps)" >&2; exit 1; }
command -v tc >/dev/null || { echo "mpi_net_bench: tc not found (iproute2)" >&2; exit 1; }
NETNS_TMP=$(mktemp -d)
trap 'netns_cleanup; rm -rf "$NETNS_TMP"' EXIT
netns_setup || { echo "mpi_net_bench: cannot set up the namespaces" >&2; exit 1; }
host_b=10.77.0.2
subnet=10.77.0.0/24
# the link between the ranks' namespaces, held to $rate each way
ip netns exec "$NS_A" tc qdisc add dev v2 root tbf rate "$rate" burst 256kb latency 50ms
ip netns exec "$NS_B" tc qdisc add dev eth0 root tbf rate "$rate" burst 256kb latency 50ms

# mpirun's remote shell: runs the daemon's command in the namespace of its host
agent="$NETNS_TMP/agent.sh"
netns_mpi_agent "$agent" "$host_b"
printf '%s slots=1\n%s slots=1\n' "$NETNS_HOST_A" "$host_b" >"$NETNS_TMP/hosts"
# shellcheck disable=SC2054  # self,tcp is one value
mpi=(mpirun -np 2 --hostfile "$NETNS_TMP/hosts" --mca plm_rsh_agent "$agent" --mca btl self,tcp
    --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet" --mca orte_tmpdir_base "$NETNS_TMP"
    -x OPENBLAS_NUM_THREADS=1 -x NN_THREADS=1)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
system=$("$BUILD/tools/nn_bench" --system)
for i in $(seq 1 "$repeat"); do
    for mode in overlap no-overlap; do
        flag=()
        [ "$mode" = no-overlap ] && flag=(--no-overlap)
        ip netns exec "$NS_A" "${mpi[@]}" "$BUILD/tools/mpi_step_bench" --width 16 --batch 256 \
            --steps "$steps" "${flag[@]}" 2>"$NETNS_TMP/err" | grep '^{' >>"$NETNS_TMP/runs.json" ||
            { echo "mpi_net_bench: the $mode run failed:" >&2; tail -n 5 "$NETNS_TMP/err" >&2; exit 1; }
    done
done
/usr/bin/python3 - "$NETNS_TMP/runs.json" "$system" "$rate" <<'PY'
import json, statistics, sys
system = json.loads(sys.argv[2])
tag = {"rate": sys.argv[3], "blas_kernel": system["blas_kernel"], "cpu": system["cpu"]}
runs = [json.loads(l) for l in open(sys.argv[1])]
for r in runs:
    print(json.dumps({**r, "bench": "mpi_net_step", **tag}))
def med(overlap, key):
    return statistics.median(r[key] for r in runs if r["overlap"] == overlap)
on, off = med(True, "step_s"), med(False, "step_s")
print(json.dumps({"bench": "mpi_net_overlap", "runs_each": len(runs) // 2,
                  "step_s_overlap": round(on, 4), "step_s_one_sum_after": round(off, 4),
                  "comm_s_per_step_overlap": round(med(True, "comm_s_per_step"), 4),
                  "comm_s_per_step_one_sum_after": round(med(False, "comm_s_per_step"), 4),
                  "speedup": round(off / on, 3), **tag}))
PY
