#!/usr/bin/python3
"""bench/conv4_bench_torch.py [repeats]: bench/conv4_bench.lua's measurement in PyTorch, same network:
4 x [conv 3x3 stride 2 pad 1, 64 filters -> batch norm (batch statistics, shift only) -> ReLU],
mean over the 2x2 map, linear 64 -> 5; milliseconds per forward+backward and per double backward."""
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(1)
repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 20
torch.manual_seed(1)
params = []
cin = 1
for _ in range(4):
    params += [torch.randn(64, cin, 3, 3) * 0.1, torch.zeros(64), torch.zeros(64)]
    cin = 64
params += [torch.randn(5, 64), torch.zeros(5)]
params = [p.requires_grad_() for p in params]


ONES = torch.ones(64)  # no learned scale (torch 1.13's double backward needs a weight tensor)


def forward(x):
    for i in range(4):
        w, b, beta = params[3 * i: 3 * i + 3]
        x = F.conv2d(x, w, b, stride=2, padding=1)
        x = F.batch_norm(x, None, None, ONES, beta, training=True, eps=1e-3)
        x = F.relu(x)
    x = x.mean(dim=(2, 3))
    return F.linear(x, params[-2], params[-1])


def median_ms(f):
    f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


print(f"{'images':<8s} {'':>6s} {'forward+backward ms':>22s} {'double backward ms':>22s}")
for n in (5, 75, 80):
    x = torch.rand(n, 1, 28, 28)
    y = torch.arange(n) % 5

    def fb():
        torch.autograd.grad(F.cross_entropy(forward(x), y), params)

    def dd():
        g = torch.autograd.grad(F.cross_entropy(forward(x), y), params, create_graph=True)
        torch.autograd.grad(sum((gi * gi).sum() for gi in g), params)

    print(f"{n:<8d} {'torch':>6s} {median_ms(fb):22.2f} {median_ms(dd):22.2f}")
