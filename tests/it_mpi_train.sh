#!/usr/bin/env bash
# The trainer's data-parallel step against one process:
# build/tools/mpi_trainer_check (tests/mpi_trainer_check.c) drives the
# trainer's own model code (trainer/model.c) under mpirun with 2 and 4 ranks:
# a global batch of 64 images split over the ranks, synchronised batch norm,
# 3 SGD steps of SimCLR (gathered NT-Xent) and of RotNet (local loss with
# dloss 1/N), each against one process on the whole batch: the loss of every
# step (limit 1e-4 relative), the parameters after the first step (1e-3 of a
# tensor's largest entry) and after the last (5e-2; rounding grows through
# ReLU decisions, see the program's comment), every rank holding the same
# parameters; and without synchronised batch norm the first step must
# differ (the check can fail). Alone (no mpirun) it is a world of one.
. "$(dirname "$0")/lib.sh"

command -v mpirun >/dev/null ||
    { echo "FAIL: mpirun not found: make deps installs openmpi-bin"; exit 1; }
require_built "$BUILD/tools/mpi_trainer_check"
mpi_args=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_args+=(--allow-run-as-root)
export OMPI_MCA_mpi_yield_when_idle=1

check() {   # check NAME COMMAND...: wants exit 0 and "all checks passed"
    local name=$1; shift
    if timeout 120 "$@" >"$tmp/$name.log" 2>&1 && grep -q 'all checks passed' "$tmp/$name.log"; then
        ok "$name"
        grep -E 'first step|after 3 steps against|without' "$tmp/$name.log" | sed 's/^/    /'
    else
        fail "$name"
        sed 's/^/    /' "$tmp/$name.log" | tail -n 40
    fi
}

check "one process without mpirun" "$BUILD/tools/mpi_trainer_check" --ranks 1 --method rotnet
check "mpirun -np 2" mpirun -np 2 "${mpi_args[@]}" "$BUILD/tools/mpi_trainer_check" --ranks 2
check "mpirun -np 4" mpirun -np 4 "${mpi_args[@]}" "$BUILD/tools/mpi_trainer_check" --ranks 4 --method simclr
"$BUILD/tools/mpi_trainer_check" --ranks 1 --method supervised >/dev/null 2>&1
[ $? -eq 2 ] && ok "bad usage exits 2" || fail "--method supervised does not exit 2"

[ "$failures" -eq 0 ] && echo "it_mpi_train: all passed" && exit 0
echo "it_mpi_train: $failures failure(s)"
exit 1
