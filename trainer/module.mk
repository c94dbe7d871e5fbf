# trainer: the training stage. libtrainercore.a holds everything but main (options,
# settings, schedule, batch assembly, receive thread, model step, run folder,
# Control publishing, reports, the stage itself) so that the unit test links the same
# code; build/bin/trainer is main.c on top of it.
trainercore_SRCS := trainer/options.c trainer/config.c trainer/schedule.c trainer/batch.c trainer/feed.c \
                    trainer/epochs.c trainer/model.c trainer/rundir.c trainer/control.c trainer/report.c \
                    trainer/trainer.c
$(eval $(call add_lib,trainercore))

trainer_SRCS := trainer/main.c
trainer_LIBS := trainercore dist nn transport proto console cli
$(eval $(call add_prog,trainer))

test_trainer_LIBS := trainercore dist nn transport proto console cli
$(eval $(call add_test,test_trainer))

# mpi_trainer_check: the trainer's data-parallel step over real ranks against
# one process, run under mpirun by tests/it_mpi_train.sh (built with MPI only)
ifeq ($(MPI),1)
mpi_trainer_check_SRCS := tests/mpi_trainer_check.c
mpi_trainer_check_LIBS := trainercore dist nn transport proto console cli
$(eval $(call add_tool,mpi_trainer_check))
endif

# mpi_step_bench: the trainer's data-parallel step timed alone, run by
# bench/mpi_bench.sh (built with MPI only)
ifeq ($(MPI),1)
mpi_step_bench_SRCS := bench/mpi_step_bench.c
mpi_step_bench_LIBS := trainercore dist nn transport proto console cli
$(eval $(call add_tool,mpi_step_bench))
endif
