# bench/openblas_core.sh, sourced by the bench scripts (after ./mamlrun is built): the bench binaries
# that link OpenBLAS themselves (ceilings, gemm_bench_*, conv_bench) and the peer run the OpenBLAS core
# that mamlrun runs (vm/blas.h: mamlrun replaces OpenBLAS's generic fallback on a CPU the library does
# not know), so that every figure of a run is measured on the same kernels. A set OPENBLAS_CORETYPE is
# kept, as mamlrun keeps it. Sets blas_line to mamlrun's account of the core and of what runs the
# convolutions (the last two lines of --version).
blas_line=$(./mamlrun --version | sed -n 's/^OpenBLAS core/OpenBLAS core/p; s/^convolutions:/; convolutions:/p' | tr -d '\n') ||
  exit 1
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  OPENBLAS_CORETYPE=$(./mamlrun -e 'io.write(require("mamlrun").blas.core)') || exit 1
  export OPENBLAS_CORETYPE
fi
