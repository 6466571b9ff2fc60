#!/usr/bin/env python3
"""scale_model.py — the alpha-beta scaling model of docs/scale.md, fed with bench_dist's figures.

    for i in 1 2 3 4 5; do OPENBLAS_NUM_THREADS=1 mpirun -np 1 build/tests/bench_dist > np1-$i.json; done
    scripts/scale_model.py np1-*.json [--bandwidth 10e9] [--latency 5e-6] [--nodes 2,4,...,64]

Several files: each measured time is the median over them.

Prints markdown tables: the predicted time of a data-parallel training step (LoRA and the
whole net, global batches 10 and 1000) and of one distributed randomized SVD of a
200,000 x 50,000 float32 matrix, for N nodes on a network of the given bandwidth and latency.

The model (Thakur, Rabenseifner & Gropp 2005; Patarasuk & Yuan 2009):
  - a sum of S bytes over N nodes, done as a reduce-scatter then an allgather (a ring
    allreduce, or lr_dist_sum's rank-ordered Alltoallv + Allgatherv), costs
        T_sum(N, S) = 2 (N - 1) alpha + 2 (N - 1) / N * S / beta
    (the local additions, S/4 flops per node, are left out: they run at memory speed);
  - a training step with global batch B: each node computes the gradient of ceil(B/N)
    examples, t_c(b) measured by bench_dist ("step": gradient + Adam in one process), then one
    sum of the packed gradient:  T_step(N) = t_c(ceil(B / N)) + T_sum(N, 4 * floats);
  - a distributed rSVD: the passes over W are local and split N ways; the communication is
    the measured collectives and bytes of one call scaled to the target's n:
        T_rsvd(N) = t_1 * (m n) / (m0 n0) / N + calls * 2 (N - 1) alpha + bytes * (n / n0) * 2 (N - 1) / N / beta
    with t_1 the one-process time on the benchmark's m0 x n0 matrix (the passes dominate; the
    replicated small factorisations are left out).
"""
import argparse
import json
import math
import statistics


def interp(points, b):
    """t_c(b) from the measured (batch, ms) points: linear in between, linear beyond the last."""
    pts = sorted(points)
    if b <= pts[0][0]:
        return pts[0][1]
    for (b0, t0), (b1, t1) in zip(pts, pts[1:]):
        if b <= b1:
            return t0 + (t1 - t0) * (b - b0) / (b1 - b0)
    (b0, t0), (b1, t1) = pts[-2], pts[-1]
    return t1 + (t1 - t0) * (b - b1) / (b1 - b0)


def t_sum(n, nbytes, alpha, beta):
    return 0.0 if n == 1 else 2 * (n - 1) * alpha + 2 * (n - 1) / n * nbytes / beta


def training_table(bench, what, floats, batch, nodes, alpha, beta):
    pts = [(s['batch'], s['ms'] / 1e3) for s in bench['step'] if s['what'] == what]
    rows = []
    base = interp(pts, batch)
    crossover, best = None, (0.0, 1)
    for n in [1] + nodes:
        b = math.ceil(batch / n)
        tc, tm = interp(pts, b), t_sum(n, 4 * floats, alpha, beta)
        if crossover is None and tm >= tc:
            crossover = n
        best = max(best, (base / (tc + tm), n))
        rows.append(f"| {n} | {b} | {1e3 * tc:.3f} | {1e3 * tm:.3f} | {1e3 * (tc + tm):.3f} | {base / (tc + tm):.2f}x |")
    head = (f"\n**{'LoRA (rank 1, base frozen)' if what == 'lora' else 'whole net'}, global batch {batch}, "
            f"{floats:,} floats summed a step**\n\n"
            "| nodes | examples per node | compute ms | sum ms | step ms | speed-up |\n|---|---|---|---|---|---|")
    tail = (f"\nFastest at N = {best[1]} ({best[0]:.2f}x); " +
            (f"communication passes computation at N = {crossover}." if crossover else
             f"communication stays below computation up to N = {nodes[-1]}."))
    if batch > max(p[0] for p in pts):
        tail += f" (One node's compute for {batch} examples is extrapolated from the largest measured slices.)"
    return "\n".join([head] + rows) + "\n" + tail


def rsvd_table(bench, nodes, alpha, beta, m=200000, n=50000, node_gb=24):
    r = bench['rsvd']
    t1 = r['seconds'] - r['mpi_seconds']
    scale = (m * n) / (r['rows'] * r['cols'])
    gb = 4 * m * n / 1e9
    rows = []
    for k in [1] + nodes:
        comp = t1 * scale / k
        comm = 0.0 if k == 1 else (r['collectives'] * 2 * (k - 1) * alpha +
                                    r['bytes'] * (n / r['cols']) * 2 * (k - 1) / k / beta)
        fits = "yes" if gb / k < 0.9 * node_gb * 2**30 / 1e9 else "no"  # W plus a few % of workspace
        rows.append(f"| {k} | {gb / k:.1f} | {fits} | {comp:.2f} | {1e3 * comm:.2f} | {comp + comm:.2f} |")
    head = (f"\n**Randomized SVD of a {m:,} x {n:,} float32 matrix ({gb:.0f} GB), rank {r['rank']}, "
            f"default options**\n\n| nodes | GB of W per node | fits {node_gb} GiB | compute s | communication ms | total s |\n"
            "|---|---|---|---|---|---|")
    return "\n".join([head] + rows)


def merge(benches):
    """One bench whose times are the medians over several runs."""
    b = json.loads(json.dumps(benches[0]))
    med = statistics.median
    for i, s in enumerate(b['step']):
        s['ms'] = med(x['step'][i]['ms'] for x in benches)
    for k in ('seconds', 'mpi_seconds'):
        b['rsvd'][k] = med(x['rsvd'][k] for x in benches)
    return b


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('bench', nargs='+', help='bench_dist JSON of one-process runs (mpirun -np 1)')
    ap.add_argument('--bandwidth', type=float, default=10e9, help='bytes/s per node (default 10e9)')
    ap.add_argument('--latency', type=float, default=5e-6, help='seconds per message (default 5e-6)')
    ap.add_argument('--nodes', default='2,4,8,16,32,64')
    a = ap.parse_args()
    bench = merge([json.load(open(f)) for f in a.bench])
    nodes = [int(x) for x in a.nodes.split(',')]
    floats = {t['what']: t['floats_per_step'] for t in bench['train']}
    print(f"Network: {a.bandwidth / 1e9:g} GB/s per node, {1e6 * a.latency:g} us per message.")
    for what in ('lora', 'full'):
        for batch in (10, 1000):
            print(training_table(bench, what, floats[what], batch, nodes, a.latency, a.bandwidth))
    print(rsvd_table(bench, nodes, a.latency, a.bandwidth))


if __name__ == '__main__':
    main()
