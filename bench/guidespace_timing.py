"""Wall time of the guide-space solver (paper route) on one core: median of repeats. Measures, asserts nothing.

    .venv/bin/python bench/guidespace_timing.py [--dim 512] [-K 4] [--theta 120] [--repeats 11]
"""
import argparse
import statistics
import time

from threadpoolctl import threadpool_limits

from gsrepro.guidespace import closed_form_guides, solve_guide_space

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--dim", type=int, default=512)
p.add_argument("-K", type=int, default=4)
p.add_argument("--theta", type=float, default=120)
p.add_argument("--repeats", type=int, default=11)
a = p.parse_args()

with threadpool_limits(1):                                   # one core, as the issue asks
    for name, fn in (("lagrangian solver", solve_guide_space), ("closed form", closed_form_guides)):
        times = []
        for seed in range(a.repeats):
            t0 = time.perf_counter()
            fn(a.dim, a.K, a.theta, seed=seed)
            times.append(time.perf_counter() - t0)
        print(f"{name:>17}: dim={a.dim} K={a.K} theta={a.theta:g}: median {statistics.median(times) * 1e3:.1f} ms "
              f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}, {a.repeats} runs, 1 thread)")
