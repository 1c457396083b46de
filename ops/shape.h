/*
** shape.h: views, permutations, narrowing and concatenation (ops/shape.c).
*/
#ifndef MAMLRUN_SHAPE_H
#define MAMLRUN_SHAPE_H

#include "tensor.h"

/* shape ops (ops/shape.c) */
Tensor *t_reshape(Tensor *a, int ndim, const int64_t *shape); /* view */
Tensor *t_permute(Tensor *a, const int *perm); /* copy */
Tensor *t_transpose(Tensor *a, int d0, int d1);
Tensor *t_narrow(Tensor *a, int dim, int64_t start, int64_t len); /* start 0-based */
Tensor *t_pad_narrow(Tensor *g, int dim, int64_t start, int64_t full); /* narrow's backward */
Tensor *t_cat(int n, Tensor **ts, int dim);
Tensor *t_contiguous_copy(Tensor *a);

#endif
