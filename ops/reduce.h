/*
** reduce.h: reductions over dims (ops/reduce.c).
*/
#ifndef MAMLRUN_REDUCE_H
#define MAMLRUN_REDUCE_H

#include "tensor.h"

/* reductions (ops/reduce.c); dims is a bitmask over a's dims */
Tensor *t_sum(Tensor *a, uint32_t dims, int keepdim);
Tensor *t_mean(Tensor *a, uint32_t dims, int keepdim);
Tensor *t_max(Tensor *a, int dim, int keepdim); /* dim < 0: over all */
Tensor *t_argmax(Tensor *a, int dim, int keepdim); /* 1-based indices as floats */
Tensor *t_var(Tensor *a, uint32_t dims, int keepdim, int unbiased);

#endif
