#!/usr/bin/env bash
# Data-parallel training's pieces over real MPI ranks (dist/, the gathered
# NT-Xent, synchronised batch norm): build/tools/mpi_dist_check alone (the
# world of one, no MPI call) and under mpirun with 2 and 3 ranks, each
# checking the collectives and one training step against one process on the
# whole batch; and dist compiled without MPI, alone and under mpirun. MPI is a
# build dependency (make deps installs Open MPI), so a
# missing mpirun or an MPI-less build fails this test.
. "$(dirname "$0")/lib.sh"

command -v mpirun >/dev/null ||
    { echo "FAIL: mpirun not found: make deps installs openmpi-bin"; exit 1; }
[ -x "$BUILD/tools/mpi_dist_check" ] ||
    { echo "FAIL: $BUILD/tools/mpi_dist_check is not built: install libopenmpi-dev (make deps) and run make"; exit 1; }

# Open MPI refuses root unless told; the checks run on one machine, more
# ranks than cores is fine.
mpi_args=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_args+=(--allow-run-as-root)

check() {   # check NAME COMMAND...: runs it, wants exit 0 and "all checks passed"
    local name=$1; shift
    if timeout 180 "$@" >"$tmp/$name.log" 2>&1 && grep -q 'all checks passed' "$tmp/$name.log"; then
        ok "$name"
    else
        fail "$name"
        sed 's/^/    /' "$tmp/$name.log" | tail -n 40
    fi
}

check "one process without mpirun" "$BUILD/tools/mpi_dist_check" --ranks 1
check "mpirun -np 2" mpirun -np 2 "${mpi_args[@]}" "$BUILD/tools/mpi_dist_check" --ranks 2
check "mpirun -np 3" mpirun -np 3 "${mpi_args[@]}" "$BUILD/tools/mpi_dist_check" --ranks 3
grep -E 'loss|gradients|statistics' "$tmp/mpirun -np 2.log" 2>/dev/null | sed 's/^/    /'

# a rank that gives up ends the whole run (no rank left waiting in a collective)
timeout 60 mpirun -np 2 "${mpi_args[@]}" "$BUILD/tools/mpi_dist_check" --ranks 2 --abort-rank 1 \
    >"$tmp/abort.log" 2>&1
rc=$?
if [ "$rc" -eq 124 ]; then
    fail "dist_abort on rank 1 left rank 0 waiting (killed by timeout)"
elif [ "$rc" -eq 3 ] && ! grep -q "passed the barrier" "$tmp/abort.log"; then   # 3: its code
    ok "dist_abort on rank 1 ends the run (exit status $rc)"
else
    fail "dist_abort on rank 1: exit status $rc"
    sed 's/^/    /' "$tmp/abort.log" | tail -n 20
fi

# the check itself fails when the world is not what it expects
if timeout 60 "$BUILD/tools/mpi_dist_check" --ranks 2 >"$tmp/wrong.log" 2>&1; then
    fail "a world of 1 passed as 2 ranks"
else
    ok "a world of 1 is not taken for 2 ranks"
fi
"$BUILD/tools/mpi_dist_check" --ranks 0 >/dev/null 2>&1
[ $? -eq 2 ] && ok "bad usage exits 2" || fail "--ranks 0 does not exit 2"

# A build without MPI (make MPI=0) runs alone and refuses mpirun: dist.c,
# its unit test and mpi_dist_check compiled here without SSL_HAVE_MPI.
[ -f "$BUILD/lib/libnn.a" ] || { echo "FAIL: $BUILD/lib/libnn.a is not built (run make)"; exit 1; }
san=()   # the sanitizer build's libnn needs the same flags
nm "$BUILD/lib/libnn.a" 2>/dev/null | grep -q __asan_ && san=(-fsanitize=address,undefined)
nompi_cc() {   # nompi_cc OUT SOURCES...
    local out=$1; shift
    cc -std=gnu11 "${san[@]}" -I"$root" -o "$out" "$@" "$root/dist/dist.c" "$BUILD/lib/libnn.a" "$BUILD/lib/libcli.a" \
        $(pkg-config --cflags --libs cmocka openblas) -lm -lpthread >>"$tmp/nompi.log" 2>&1
}
if nompi_cc "$tmp/test_dist_nompi" "$root/tests/test_dist.c" &&
   nompi_cc "$tmp/check_nompi" "$root/tests/mpi_dist_check.c"; then
    if "$tmp/test_dist_nompi" >>"$tmp/nompi.log" 2>&1 && ! grep -q SKIPPED "$tmp/nompi.log"; then
        ok "a build without MPI: its unit test (a launcher's world of 2 refused)"
    else
        fail "the unit test of a build without MPI"
        sed 's/^/    /' "$tmp/nompi.log" | tail -n 20
    fi
    check "a build without MPI, one process" "$tmp/check_nompi" --ranks 1
    if timeout 60 mpirun -np 2 "${mpi_args[@]}" "$tmp/check_nompi" --ranks 2 >"$tmp/nompi_mpirun.log" 2>&1; then
        fail "a build without MPI ran under mpirun -np 2"
    elif grep -q "this build has no MPI" "$tmp/nompi_mpirun.log"; then
        ok "a build without MPI stops under mpirun -np 2, saying why"
    else
        fail "a build without MPI under mpirun -np 2: no clear message"
        sed 's/^/    /' "$tmp/nompi_mpirun.log" | tail -n 20
    fi
else
    fail "cannot compile dist without MPI"
    sed 's/^/    /' "$tmp/nompi.log" | tail -n 20
fi

if [ "$failures" -ne 0 ]; then
    echo "it_mpi_dist: $failures failures"
    exit 1
fi
echo "it_mpi_dist: all passed"
