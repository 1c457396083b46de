/* batchnorm.h: fused batch normalisation with batch statistics (ops/batchnorm.c) */
#ifndef MAMLRUN_BATCHNORM_H
#define MAMLRUN_BATCHNORM_H

#include "tensor.h"

/* x (N, C, ...) -> (x - mean) / sqrt(var + eps) per channel, the statistics over
** all dims but the channel dim (biased variance). If mean_out / var_out are not
** NULL they get new (C) tensors of the batch mean and biased variance (constants,
** for running-statistics buffers). Differentiable to any order. */
Tensor *t_bn_normalize(Tensor *x, double eps, Tensor **mean_out, Tensor **var_out);

#endif
