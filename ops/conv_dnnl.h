/*
** conv_dnnl.h: channels-last convolutions on oneDNN (conv_dnnl.c). Each returns 1 when it
** computed the result, 0 when oneDNN is absent or declines the geometry (the caller then runs
** its own kernels); the arguments are those of conv2d's kernels (nnops.h) with g->nhwc set.
*/
#ifndef MAMLRUN_CONV_DNNL_H
#define MAMLRUN_CONV_DNNL_H

#include <stddef.h>

#include "nnops.h"

int conv_dnnl_forward(const ConvGeom *g, float *y, const float *x, const float *w, const float *b);
int conv_dnnl_backward_input(const ConvGeom *g, float *gx, const float *gy, const float *w);
int conv_dnnl_backward_weight(const ConvGeom *g, float *gw, const float *x, const float *gy);
/* what runs the channels-last convolutions, as a line for `mamlrun --version` and mamlrun.conv
** ("error: ..." when MAMLRUN_CONV is bad); returns buf */
const char *conv_backend(char *buf, size_t n);

#endif
