"""NumPy emulation of the tensor-core loss kernel (csrc/cuda/exp_pair_loss_tc.cu), for checking it
without a GPU: the same 64 x 64 tiles, splits of the bank rows, TF32 rounding (round to nearest,
ties away) with the 3-term split, and float32 accumulation in steps of 8. It compares loss and
gradients with pyhash's CPU kernel at the CUDA tests' tolerances (tanh surrogate, asymmetric form).

    python tools/emulate_tc_loss.py      # with pyhash importable; prints one line per shape
"""
import numpy as np
import torch

import pyhash

ROWS, COLS = 64, 64

def tf32(x):
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x1000) & 0xFFFFE000).astype(np.uint32)  # round to nearest, ties away
    return b.view(np.float32)

def mma3(a, b):  # a [16, K] @ b [K, N], K steps of 8 accumulated in float32
    ah, bh = tf32(a), tf32(b)
    al, bl = tf32(a - ah), tf32(b - bh)
    acc = np.zeros((a.shape[0], b.shape[1]), np.float32)
    for k in range(0, a.shape[1], 8):
        s = slice(k, k + 8)
        acc = (acc + al[:, s].astype(np.float32) @ bh[s]).astype(np.float32)
        acc = (acc + ah[:, s] @ bl[s]).astype(np.float32)
        acc = (acc + ah[:, s] @ bh[s]).astype(np.float32)
    return acc

def rows_side(u, v, lu, lv, lam, w_sim, w_dis, symmetric, splits):
    n, B = u.shape; m = v.shape[0]
    P = (B + 15) // 16 * 16
    col_tiles = max(1, (m + COLS - 1) // COLS)
    tps = (col_tiles + splits - 1) // splits
    grad = np.zeros((splits, n, B), np.float32); loss = 0.0
    for i0 in range(0, n, ROWS):
        us = np.zeros((ROWS, P), np.float32); r = min(ROWS, n - i0); us[:r, :B] = u[i0:i0 + r]
        for sp in range(splits):
            jb = sp * tps * COLS; je = min(m, jb + tps * COLS)
            g = np.zeros((ROWS, P), np.float32)
            for j0 in range(jb, je, COLS):
                vs = np.zeros((COLS, P), np.float32); c = min(COLS, je - j0); vs[:c, :B] = v[j0:j0 + c]
                S = np.concatenate([mma3(us[w*16:(w+1)*16], vs.T.copy()) for w in range(4)])
                i = np.arange(i0, i0 + ROWS)[:, None]; j = np.arange(j0, j0 + COLS)[None, :]
                valid = (i < n) & (j < je)
                sim = lu[np.minimum(i, n - 1)] == lv[np.minimum(j, m - 1)]
                sign = np.where(sim, 1.0, -1.0).astype(np.float32)
                w = np.where(sim, np.float32(w_sim), np.float32(w_dis)).astype(np.float32)
                if symmetric: w = np.where(i == j, np.float32(0), w)
                ex = (np.float32(-lam) * sign * S * np.float32(1.0 / B)).astype(np.float32)
                we = (w * np.exp(ex)).astype(np.float32)
                loss += float(np.where(valid, we, 0).astype(np.float64).sum())
                C = np.where(valid, np.float32(-lam) * sign * we * np.float32(1.0 / B), 0).astype(np.float32)
                g = (g + np.concatenate([mma3(C[w*16:(w+1)*16], vs) for w in range(4)])).astype(np.float32)
            rr = min(ROWS, n - i0)
            grad[sp, i0:i0 + rr] = g[:rr, :B]
    return grad.sum(0), loss

def check(n, m, B, splits_u, splits_v, seed=0, weighting="balanced"):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, B, generator=g, dtype=torch.float64); y = torch.randn(m, B, generator=g, dtype=torch.float64)
    lz = torch.randint(0, 3, (n,), generator=g); ly = torch.randint(0, 3, (m,), generator=g)
    lam = 1.0
    u = torch.tanh(z).float().numpy(); v = torch.tanh(y).float().numpy()
    sim = (lz[:, None] == ly[None, :]).numpy(); ns = sim.sum(); nd = sim.size - ns
    w_sim, w_dis = (0.5 / ns, 0.5 / nd) if weighting == "balanced" else (1 / sim.size, 1 / sim.size)
    gu, loss = rows_side(u, v, lz.numpy(), ly.numpy(), lam, w_sim, w_dis, False, splits_u)
    gv, _ = rows_side(v, u, ly.numpy(), lz.numpy(), lam, w_sim, w_dis, False, splits_v)
    zf = z.float().requires_grad_(); yf = y.float().requires_grad_()
    a = pyhash.exp_pair_loss(zf, lz, yf, ly, weighting=weighting)
    ga = torch.autograd.grad(a, (zf, yf))
    # chain through tanh like finish_gradients: dz = du * (1 - u^2)
    gz = torch.from_numpy(gu) * (1 - torch.from_numpy(u) ** 2); gy = torch.from_numpy(gv) * (1 - torch.from_numpy(v) ** 2)
    torch.testing.assert_close(torch.tensor(loss, dtype=torch.float32), a.detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gz, ga[0], rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(gy, ga[1], rtol=1e-4, atol=1e-8)
    print(f"ok: n={n} m={m} B={B} splits {splits_u}/{splits_v}: max |dz error| {float((gz - ga[0]).abs().max()):.1e}"
          f" (max |dz| {float(ga[0].abs().max()):.1e})")

for args in [(300, 700, 64, 11, 5), (130, 257, 12, 5, 3), (70, 90, 100, 2, 2), (33, 65, 128, 2, 1), (64, 3000, 64, 47, 1)]:
    check(*args)
