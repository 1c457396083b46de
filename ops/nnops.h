/*
** nnops.h: convolution and pooling ops (ops/conv.c, ops/pool.c).
**
** Tensors are NCHW (the convolutions also take channels-last NHWC). Every op is differentiable, and its backward is written
** with the other ops of its family, so gradients of any order are exact:
**
**   conv2d(x, w)                  backward: conv2d_backward_input(g, w), conv2d_backward_weight(x, g)
**   conv2d_backward_input(gy, w)  backward: conv2d(g, w), conv2d_backward_weight(g, gy)
**   conv2d_backward_weight(x, gy) backward: conv2d_backward_input(gy, g), conv2d(x, g)
**   max_pool2d(x)                 backward: max_pool2d_backward(g, indices)
**   max_pool2d_backward(gy, idx)  backward: max_pool2d_select(g, idx)   (the two are adjoint)
**   avg_pool2d(x)                 backward: avg_pool2d_backward(g)      (the two are adjoint)
**
** Arguments are numbered as in the Lua call T.conv2d(x, w, b, {stride, padding}):
** errors read "bad argument #2 to 'conv2d' (...)".
*/
#ifndef MAMLRUN_NNOPS_H
#define MAMLRUN_NNOPS_H

#include "tensor.h"

/* ------------------------------------------------------------ convolution (ops/conv.c) */
/* x (N,C,H,W), w (O,C,KH,KW), b (O) or NULL -> (N,O,OH,OW),
** OH = (H + 2*padding - KH) / stride + 1, zero padding, cross-correlation like torch.
** nhwc: the activations are channels-last instead, x (N,H,W,C) -> (N,OH,OW,O), and so
** are gy and gx below; the weight keeps its (O,C,KH,KW) in both layouts. */
enum { T_CONV_NHWC = 1, T_CONV_RELU = 2 }; /* conv2d's flags (the backward ops take T_CONV_NHWC) */
/* flags T_CONV_RELU: max(conv2d(x, w) + b, 0) in one op, whose backward masks by the output */
Tensor *t_conv2d(Tensor *x, Tensor *w, Tensor *b, int stride, int padding, int flags);
/* gy (N,O,OH,OW), w (O,C,KH,KW) -> gx (N,C,H,W): the adjoint of conv2d in x
** (H, W are needed because with stride > 1 several input sizes give one OH) */
Tensor *t_conv2d_backward_input(Tensor *gy, Tensor *w, int64_t h, int64_t w_, int stride, int padding, int nhwc);
/* x (N,C,H,W), gy (N,O,OH,OW) -> gw (O,C,KH,KW): the adjoint of conv2d in w */
Tensor *t_conv2d_backward_weight(Tensor *x, Tensor *gy, int64_t kh, int64_t kw, int stride, int padding, int nhwc);

/* ------------------------------------------------------------ pooling (ops/pool.c) */
/* x (N,C,H,W) -> (N,C,OH,OW), OH = (H + 2*padding - k) / stride + 1, padding <= k/2,
** padded cells never win (-inf, like torch). If indices is not NULL it gets a new
** (N,C,OH,OW) tensor of the argmax positions h*W+w inside each plane, as floats. */
Tensor *t_max_pool2d(Tensor *x, int k, int stride, int padding, Tensor **indices);
/* gy (N,C,OH,OW), indices as above -> gx (N,C,H,W): gy scattered (added) at indices */
Tensor *t_max_pool2d_backward(Tensor *gy, Tensor *indices, int64_t h, int64_t w);
/* x (N,C,H,W), indices (N,C,OH,OW) -> (N,C,OH,OW): x gathered at indices; the adjoint
** of max_pool2d_backward, and max_pool2d with its argmax held fixed */
Tensor *t_max_pool2d_select(Tensor *x, Tensor *indices);
/* x (N,C,H,W) -> (N,C,OH,OW), each window's sum over k*k (padding counts as zeros,
** count_include_pad=True like torch's default) */
Tensor *t_avg_pool2d(Tensor *x, int k, int stride, int padding);
/* gy (N,C,OH,OW) -> gx (N,C,H,W), the adjoint of avg_pool2d */
Tensor *t_avg_pool2d_backward(Tensor *gy, int64_t h, int64_t w, int k, int stride, int padding);
/* x (N,C,H,W), or (N,H,W,C) when nhwc -> (N,C), the mean over H and W */
Tensor *t_global_avg_pool2d(Tensor *x, int nhwc);

/* ------------------------------------------------------------ kernels */
/* The raw float kernels behind the conv ops, for tests and benchmarks: no
** checks, no autograd; the output is overwritten. */
typedef struct ConvGeom {
  int64_t n, c, h, w; /* input (N,C,H,W) */
  int64_t o, kh, kw; /* weight (O,C,KH,KW) */
  int64_t oh, ow; /* output (N,O,OH,OW) */
  int stride, padding;
  int nhwc; /* 0: the tensors above; 1: channels-last x (N,H,W,C), gx, y and gy (N,OH,OW,O) */
  int relu; /* forward: y = max(conv + b, 0) */
  Tensor *weight; /* the op's weight tensor, or NULL: the kernels then reshuffle w each call */
} ConvGeom;
ConvGeom conv2d_geom(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh, int64_t kw, int stride,
                     int padding);
/* out (N,O,OH,OW) = conv(x (N,C,H,W), w (O,C,KH,KW)) + b (O) (b may be NULL) */
void conv2d_forward_kernel(const ConvGeom *g, float *out, const float *x, const float *w, const float *b);
/* gx (N,C,H,W) from gy (N,O,OH,OW), w (O,C,KH,KW) */
void conv2d_backward_input_kernel(const ConvGeom *g, float *gx, const float *gy, const float *w);
/* gw (O,C,KH,KW) from x (N,C,H,W), gy (N,O,OH,OW) */
void conv2d_backward_weight_kernel(const ConvGeom *g, float *gw, const float *x, const float *gy);
/* Images per im2col chunk are chosen so that a chunk's column buffer holds about
** this many floats (default 1 << 18, 1 MiB); returns the previous value. Results
** of conv2d_backward_weight depend on it (summation order), so tests only. */
int64_t conv2d_set_chunk_floats(int64_t n);
/* a (rows, cols) -> at (cols, rows), the layout change around the convolution GEMMs.
** kernel 0: 4x4 SSE blocks; 1: 8x8 AVX blocks along a's rows (a is the cold side);
** 2: 8x8 AVX blocks along at's rows (at is); 1 and 2 are 0 on a CPU without AVX.
** The same result in every case (tests choose each). */
void conv2d_transpose_plane(const float *a, int64_t rows, int64_t cols, float *at, int kernel);

#endif
