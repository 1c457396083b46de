/* batchnorm.h: fused batch normalisation with batch statistics (ops/batchnorm.c) */
#ifndef MAMLRUN_BATCHNORM_H
#define MAMLRUN_BATCHNORM_H

#include "tensor.h"

/* x (N, C, ...) -> (x - mean) / sqrt(var + eps) per channel, the statistics over
** all dims but the channel dim (biased variance). If mean_out / var_out are not
** NULL they get new (C) tensors of the batch mean and biased variance (constants,
** for running-statistics buffers). Differentiable to any order. */
Tensor *t_bn_normalize(Tensor *x, double eps, Tensor **mean_out, Tensor **var_out);
/* t_bn_normalize(x) * w[c] + b[c] (w, b may be NULL) in one fused op: training-mode
** batch_norm; with relu, max(that, 0) in the same pass. mean_out / var_out as for
** t_bn_normalize. Differentiable to any order. */
Tensor *t_bn_affine(Tensor *x, Tensor *w, Tensor *b, double eps, int relu, Tensor **mean_out, Tensor **var_out);

/* per-channel pieces (channel = dim 2 of (N, C, ...)), each differentiable:
** x * w[c] + b[c] (w, b may be NULL); sum of a * b per channel; sum per channel */
/* a per-channel argument of batch_norm: NULL, or of shape (c); else an error naming arg */
void bn_check_channels(const char *what, int arg, Tensor *v, int64_t c);
Tensor *t_channel_affine(Tensor *x, Tensor *w, Tensor *b);
Tensor *t_channel_dot(Tensor *a, Tensor *b);
Tensor *t_channel_sum(Tensor *a);

#endif
