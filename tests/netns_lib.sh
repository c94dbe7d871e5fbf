# Sourced by tests/it_netns.sh, tests/it_mpi_netns.sh, bench/netns_bench.sh and
# bench/mpi_net_bench.sh: three network
# namespaces joined by veth pairs on a bridge, like three hosts on a LAN,
# and a CURVE pipeline spread over them:
#
#   $NS_A  10.77.0.1  loader + trainer (bound on this address)
#   $NS_B  10.77.0.2  augmenters            } connected to 10.77.0.1
#   $NS_C  10.77.0.3  augmenters            }
#
# Needs iproute2 and the right to create namespaces: root, or else a user
# namespace (netns_reexec_unshared). The caller sets BUILD, FMNIST, PY and a
# scratch folder NETNS_TMP, and calls netns_cleanup on every exit path.

NETNS_PREFIX="sslp$$"
NS_A=${NETNS_PREFIX}a
NS_B=${NETNS_PREFIX}b
NS_C=${NETNS_PREFIX}c
NETNS_HOST_A=10.77.0.1
NETNS_BRIDGE=br0
NETNS_PORT=5555           # loader 5555, trainer 5556, control 5558: the namespaces are private
NETNS_UNSHARED_ENV=SSLP_NETNS_UNSHARED

# 0 when this process may create network namespaces.
netns_available() {
    command -v ip >/dev/null 2>&1 || return 1
    ip netns add "${NETNS_PREFIX}probe" 2>/dev/null || return 1
    ip netns del "${NETNS_PREFIX}probe" 2>/dev/null
    return 0
}

# Without the right to create namespaces, runs the script again inside a new
# user namespace where it is root (unshare --user --map-root-user --net
# --mount, with a private /run for `ip netns`). Returns only when that is not
# possible either (or already tried).
netns_reexec_unshared() {
    [ -z "${!NETNS_UNSHARED_ENV:-}" ] || return 0
    command -v unshare >/dev/null 2>&1 || return 0
    unshare --user --map-root-user --net --mount true 2>/dev/null || return 0
    # shellcheck disable=SC2016
    exec env "$NETNS_UNSHARED_ENV=1" unshare --user --map-root-user --net --mount \
        bash -c 'mount -t tmpfs tmpfs /run && mkdir -p /run/netns && exec bash "$@"' bash "$@"
}

netns_setup() {
    local ns
    for ns in "$NS_A" "$NS_B" "$NS_C"; do
        ip netns add "$ns" || return 1
        ip -n "$ns" link set lo up || return 1
    done
    ip -n "$NS_A" link add "$NETNS_BRIDGE" type bridge || return 1
    ip -n "$NS_A" addr add "$NETNS_HOST_A/24" dev "$NETNS_BRIDGE" || return 1
    ip -n "$NS_A" link set "$NETNS_BRIDGE" up || return 1
    local i=2
    for ns in "$NS_B" "$NS_C"; do
        # one end on the bridge in A, the other as eth0 in the augmenters' namespace
        ip link add "v$i" netns "$NS_A" type veth peer name eth0 netns "$ns" || return 1
        ip -n "$NS_A" link set "v$i" master "$NETNS_BRIDGE" up || return 1
        ip -n "$ns" addr add "10.77.0.$i/24" dev eth0 || return 1
        ip -n "$ns" link set eth0 up || return 1
        i=$((i + 1))
    done
}

# Stops every process left in the namespaces (only ours run there) and
# deletes them. Safe to call more than once.
netns_cleanup() {
    local ns p
    for ns in "$NS_A" "$NS_B" "$NS_C"; do
        ip netns pids "$ns" 2>/dev/null | while read -r p; do kill -TERM "$p" 2>/dev/null; done
    done
    sleep 0.3
    for ns in "$NS_A" "$NS_B" "$NS_C"; do
        ip netns pids "$ns" 2>/dev/null | while read -r p; do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    return 0
}

# netns_keys: a CURVE key folder with one client key per augmenter namespace
# ($NETNS_TMP/keys, clients/b and clients/c).
netns_keys() {
    [ -d "$NETNS_TMP/keys" ] && return 0
    "$BUILD/bin/keygen" "$NETNS_TMP/keys" >/dev/null &&
        "$BUILD/bin/keygen" --client b "$NETNS_TMP/keys" >/dev/null &&
        "$BUILD/bin/keygen" --client c "$NETNS_TMP/keys" >/dev/null
}

# netns_pipeline NAME STEPS NS...: loader and trainer in $NS_A, one augmenter
# (one worker) in each namespace listed (a namespace may be listed twice),
# SimCLR on Fashion-MNIST for STEPS steps, CURVE on every socket. Logs in
# $NETNS_TMP/NAME.*; returns the trainer's exit status. Sets netns_rate
# (training images/s after the first quarter of the steps) and
# netns_aug_samples (samples each augmenter processed, in order).
netns_pipeline() {
    local name=$1 steps=$2 ns i=0 pids=() rc
    shift 2
    local keys="$NETNS_TMP/keys" out="$NETNS_TMP/$name"
    local ep_l="tcp://$NETNS_HOST_A:$NETNS_PORT" ep_t="tcp://$NETNS_HOST_A:$((NETNS_PORT + 1))"
    local ep_c="tcp://$NETNS_HOST_A:$((NETNS_PORT + 3))"
    netns_keys || return 1
    timeout 120 ip netns exec "$NS_A" "$BUILD/bin/loader" --data "$FMNIST" --limit 20000 --epochs 0 \
        --bind "$ep_l" --control "$ep_c" --curve "$keys" --quiet >"$out.loader.out" 2>"$out.loader.err" &
    pids+=($!)
    for ns in "$@"; do
        i=$((i + 1))
        local who=b
        [ "$ns" = "$NS_C" ] && who=c
        timeout 120 ip netns exec "$ns" "$BUILD/bin/augmenter" --connect "$ep_l" --push "$ep_t" --control "$ep_c" \
            --workers 1 --batch 32 --size 28 --channels 1 --seed "$i" --curve "$keys/clients/$who" --quiet \
            >"$out.aug$i.out" 2>"$out.aug$i.err" &
        pids+=($!)
    done
    timeout 120 ip netns exec "$NS_A" "$BUILD/bin/trainer" --method simclr --width 8 --batch 64 --steps "$steps" \
        --bind "$ep_t" --control "$ep_c" --evaluator none --curve "$keys" --out "$out.run" --quiet \
        >"$out.trainer.out" 2>"$out.trainer.err"
    rc=$?
    # the trainer's STOP ends the others
    local p
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -TERM "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    netns_rate=$("$PY" - "$out.run/metrics.jsonl" 64 <<'EOF' 2>/dev/null
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steady = rows[len(rows) // 4:]
secs = steady[-1]["time"] - steady[0]["time"]
print(round(int(sys.argv[2]) * (len(steady) - 1) / secs, 1))
EOF
)
    netns_aug_samples=()
    for ((p = 1; p <= i; p++)); do
        netns_aug_samples+=("$(sed -n 's/.*: \([0-9]*\) samples, .*views in.*/\1/p' "$out.aug$p.err" | tail -n 1)")
    done
    return $rc
}

# netns_mpi_agent FILE HOST_B [LOG]: writes mpirun's remote shell FILE
# (--mca plm_rsh_agent): `FILE HOST COMMAND...` runs COMMAND (a shell line,
# as ssh would) in the namespace that stands for HOST, $NS_A for
# $NETNS_HOST_A and $NS_B for HOST_B; with LOG, each call is appended to it
# as "HOST: COMMAND".
netns_mpi_agent() {
    local log=""
    [ -n "${3:-}" ] && log="echo \"\$host: \$*\" >>\"$3\""
    cat >"$1" <<EOF
#!/bin/sh
host=\$1
shift
case "\$host" in
$NETNS_HOST_A) ns=$NS_A ;;
$2) ns=$NS_B ;;
*) echo "netns_agent: no namespace stands for host \$host" >&2; exit 1 ;;
esac
$log
exec ip netns exec "\$ns" sh -c "\$*"
EOF
    chmod +x "$1"
}
