#!/usr/bin/python3
"""The torch side of bench/conv_bench.c: the same layers, ops and table.

    /usr/bin/python3 bench/conv_bench_torch.py [threads=1]
"""
import os
import sys
import time

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
os.environ["OMP_NUM_THREADS"] = str(THREADS)
os.environ["OPENBLAS_NUM_THREADS"] = str(THREADS)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LAYERS = [(1, 28, 64, 3, 2, 0), (64, 13, 64, 3, 2, 0), (64, 6, 64, 3, 2, 0), (64, 2, 64, 2, 1, 0),
          (1, 28, 64, 3, 2, 1), (64, 14, 64, 3, 2, 1), (64, 7, 64, 3, 2, 1), (64, 4, 64, 3, 2, 1)]


# with one thread, the calling thread's CPU time: steadier than wall time on a shared machine
clock = time.thread_time if THREADS == 1 else time.perf_counter


def time_op(fn):
    """seconds per call: best of 5, each averaged over >= 20 ms"""
    fn()
    best = 1e30
    for _ in range(5):
        iters, t0 = 0, clock()
        while True:
            fn()
            iters += 1
            dt = clock() - t0
            if dt >= 0.02:
                break
        best = min(best, dt / iters)
    return best


def main():
    torch.set_num_threads(THREADS)
    print(f"# torch {torch.__version__} conv2d, threads {THREADS}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}, "
          f"{'thread CPU' if THREADS == 1 else 'wall'} time")
    conv_bw = torch.ops.aten.convolution_backward
    for n in (5, 80):
        for c, h, o, k, s, p in LAYERS:
            x, w = torch.rand(n, c, h, h) - 0.5, torch.rand(o, c, k, k) - 0.5
            y = F.conv2d(x, w, stride=s, padding=p)
            gy = torch.rand_like(y) - 0.5
            oh, ow = y.shape[2], y.shape[3]
            flops = 2.0 * n * o * oh * ow * c * k * k
            args = (gy, x, w, None, [s, s], [p, p], [1, 1], False, [0, 0], 1)
            ops = [("forward", lambda: F.conv2d(x, w, stride=s, padding=p)),
                   ("backward_input", lambda: conv_bw(*args, [True, False, False])),
                   ("backward_weight", lambda: conv_bw(*args, [False, True, False]))]
            name = f"{c}x{h}x{h} k{k} s{s} p{p}"
            for op, fn in ops:
                t = time_op(fn)
                print(f"{'torch':8s} {n:5d} {name:26s} {op:16s} {t * 1e6:9.1f} {flops / t * 1e-9:8.2f}",
                      flush=True)


if __name__ == "__main__":
    with torch.no_grad():
        main()
