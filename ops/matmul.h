/*
** matmul.h: batched matrix products and the one GEMM of the project (ops/matmul.c).
*/
#ifndef MAMLRUN_MATMUL_H
#define MAMLRUN_MATMUL_H

#include "tensor.h"

/* linear algebra (ops/matmul.c) */
Tensor *t_matmul(Tensor *a, Tensor *b);
/* C = alpha op(A) op(B) + beta C, row-major, on OpenBLAS; every GEMM of the
** project goes through it so that t_flops() counts the FLOPs done */
void t_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
             int ldb, float beta, float *c, int ldc);
int64_t t_flops(void);
/* FLOPs a kernel did outside t_sgemm (oneDNN's convolutions: the GEMM path's count for the same op) */
void t_count_flops(int64_t n);
/* GEMM shape log (MAMLRUN_GEMM_LOG=FILE, off by default): t_gemm_log_on() says whether it is on;
** t_gemm_site(printf format, ...) names the op of this thread's next GEMMs in it (call it only
** when the log is on) */
int t_gemm_log_on(void);
void t_gemm_site(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
