/* nn/blas: which OpenBLAS kernel the matrix products run on, and making sure
 * it is the best one the CPU can run.
 *
 * OpenBLAS picks its kernel from the CPU model when the library loads, before
 * main. Debian's 0.3.21 does not know some models (Intel family 6 model 207)
 * and falls back to its SSE3 "Prescott" kernel, about five times slower than
 * "SkylakeX" on the same chip. It reads OPENBLAS_CORETYPE at that same moment
 * only, so the one way to change the kernel is to start the program again:
 * nn_blas_init, called first thing in main, compares the kernel OpenBLAS chose
 * with the best one the CPU's features allow (AVX-512 F+BW+VL+DQ: SKYLAKEX;
 * AVX2+FMA: HASWELL, ZEN on AMD) and, when OpenBLAS fell below it, re-executes
 * the program (/proc/self/exe, same argv) with OPENBLAS_CORETYPE naming the
 * better kernel. A kernel already at least that good is left alone.
 *
 * Environment:
 *   OPENBLAS_CORETYPE       set by the user: respected, logged as the user's choice
 *   NN_BLAS_OVERRIDE=1      correct a weaker OPENBLAS_CORETYPE even when the user set
 *                           it (lets tests/it_blas_kernel.sh take the restart path on
 *                           any machine: cpuid cannot be faked)
 *   NN_BLAS_RESTARTED       internal: marks the restarted process, which never
 *                           restarts again; removed from the environment once read,
 *                           and OPENBLAS_CORETYPE is put back as the user had it
 *   NN_BLAS_USER_CORETYPE   internal: the user's OPENBLAS_CORETYPE across the restart
 */
#ifndef NN_BLAS_H
#define NN_BLAS_H

/* First thing in main, before any other work (and before getopt reorders
 * argv): may replace the process by a fresh start of the same program with
 * the same argv (argv NULL: never). Later calls do nothing. */
void nn_blas_init(char **argv);

/* One line through console_log (console/console.h: the program's prefix):
 * "OpenBLAS kernel SkylakeX (CPU: avx512)", or "OpenBLAS kernel SkylakeX
 * (OpenBLAS chose Prescott; switched: CPU supports avx512)", or the user's
 * choice, or a warning when the kernel is still below what the CPU supports.
 * With `quiet` only that warning is printed. Needs libconsole. */
void nn_blas_log(int quiet);

/* The kernel in use, as OpenBLAS names it ("SkylakeX"). */
const char *nn_blas_kernel(void);

/* The CPU, for benchmark records: /proc/cpuinfo's model name, family and
 * model ("Intel(R) Xeon(R) Processor family 6 model 167"), "unknown" when
 * absent. Holds no quote, backslash or control character (safe in JSON). */
const char *nn_blas_cpu(void);

#endif
