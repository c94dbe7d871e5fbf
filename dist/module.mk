# dist: the processes of a data-parallel training run over MPI (libdist.a):
# rank, size, allreduce, allgather, broadcast, per-rank endpoints. Only dist.c
# includes mpi.h; MPI_CFLAGS is empty in a build without MPI (make MPI=0).
dist_SRCS := dist/dist.c
$(eval $(call add_lib,dist))
$(BUILD)/obj/dist/%.o: CFLAGS += $(MPI_CFLAGS)

test_dist_LIBS := dist
$(eval $(call add_test,test_dist))

test_dist_ntxent_LIBS := nn
$(eval $(call add_test,test_dist_ntxent))

# mpi_dist_check: the collectives and the gathered NT-Xent over real ranks,
# run under mpirun by tests/it_mpi_dist.sh (built with MPI only)
ifeq ($(MPI),1)
mpi_dist_check_SRCS := tests/mpi_dist_check.c
mpi_dist_check_LIBS := dist nn cli
$(eval $(call add_tool,mpi_dist_check))
endif
