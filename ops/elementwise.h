/*
** elementwise.h: elementwise ops with numpy broadcasting, comparisons, and the broadcasting helpers (ops/elementwise.c).
*/
#ifndef MAMLRUN_ELEMENTWISE_H
#define MAMLRUN_ELEMENTWISE_H

#include "tensor.h"

/* elementwise, with numpy broadcasting (ops/elementwise.c) */
Tensor *t_add(Tensor *a, Tensor *b);
Tensor *t_sub(Tensor *a, Tensor *b);
Tensor *t_mul(Tensor *a, Tensor *b);
Tensor *t_div(Tensor *a, Tensor *b);
Tensor *t_pow(Tensor *a, Tensor *b); /* a^b, elementwise */
Tensor *t_add_scalar(Tensor *a, double s);
Tensor *t_mul_scalar(Tensor *a, double s);
Tensor *t_sub_scaled(Tensor *a, Tensor *b, double s); /* a - b * s, a and b of one shape */
Tensor *t_pow_scalar(Tensor *a, double p);
Tensor *t_rsub_scalar(Tensor *a, double s); /* s - a */
Tensor *t_rdiv_scalar(Tensor *a, double s); /* s / a */
Tensor *t_neg(Tensor *a);
Tensor *t_exp(Tensor *a);
Tensor *t_log(Tensor *a);
Tensor *t_sqrt(Tensor *a);
Tensor *t_abs(Tensor *a);
Tensor *t_sign(Tensor *a); /* not differentiable (zero gradient) */
Tensor *t_relu(Tensor *a);
/* g where x > 0, else 0 (relu's backward at x; also at relu(x), which is > 0 where x is) */
Tensor *t_relu_backward(Tensor *g, Tensor *x);
Tensor *t_sigmoid(Tensor *a);
Tensor *t_tanh(Tensor *a);
/* comparisons give 0/1 floats and carry no gradient */
enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };
Tensor *t_compare(Tensor *a, Tensor *b, int op);
/* broadcasting helpers, each the other's backward */
Tensor *t_expand(Tensor *a, int ndim, const int64_t *shape);
Tensor *t_sum_to(Tensor *a, int ndim, const int64_t *shape);
/* broadcast shape of a and b into out (returns ndim) or error naming fn */
int t_broadcast_shape(const char *fn, const Tensor *a, const Tensor *b, int64_t *out);

#endif
