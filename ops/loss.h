/* loss.h: networks' compositions of differentiable ops (ops/loss.c) */
#ifndef MAMLRUN_LOSS_H
#define MAMLRUN_LOSS_H

#include "tensor.h"

typedef struct BatchNormOpts {
  Tensor *running_mean, *running_var; /* buffers (C), updated in training mode; may be NULL */
  int training; /* 1: batch statistics; 0: running statistics */
  double momentum, eps;
  int nhwc; /* 1: x is channels-last (N, ..., C), normalised over all but its last dim */
  int relu; /* 1: max(batch_norm(x), 0), fused in training mode */
} BatchNormOpts;

Tensor *t_linear(Tensor *x, Tensor *w, Tensor *b);
Tensor *t_log_softmax(Tensor *x, int dim);
Tensor *t_softmax(Tensor *x, int dim);
Tensor *t_cross_entropy(Tensor *logits, const int64_t *labels, int64_t nlabels);
Tensor *t_mse_loss(Tensor *a, Tensor *b);
double t_accuracy(Tensor *logits, const int64_t *labels, int64_t nlabels);
Tensor *t_batch_norm(Tensor *x, Tensor *weight, Tensor *bias, const BatchNormOpts *o);

#endif
