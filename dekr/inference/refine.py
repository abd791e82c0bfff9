"""Official MATCH_HMP second step ("adjust"): refine keypoints by fitting a 2D Gaussian to the heatmap.

For every keypoint whose score exceeds a threshold, the official code takes the
``(2 kernel + 1)``-square window of the keypoint's scale-averaged, input-resolution heatmap around
the rounded keypoint (clipped at the map border) and fits ``A exp(-((c - c0)^2 + (r - r0)^2) / (2 s^2))``
by least squares (scipy ``curve_fit``, Levenberg-Marquardt, initial guess: the heatmap value at the
centre cell, the centre cell, ``s = sigma``); the fitted ``(c0, r0)`` replaces the keypoint, and a
fit that raises leaves it unchanged.

Here all windows (every person, keypoint and image) are gathered with index arithmetic and fitted
together, no Python loop over them: up to a fixed number of Levenberg-Marquardt iterations on the
4 parameters per window, batched 4x4 normal equations (``torch.linalg.solve_ex``) whose sums over
the window factorise into row and column sums, since both the Gaussian and the clipped window are
separable. Keypoints that round to the same cell of the same heatmap get the same window and
start, hence the same result (the official code caches them); each distinct window is fitted once.

Differences from the official code (all deliberate):

* Border windows: the official meshgrid pairs rows and columns wrongly whenever the clipped window
  is not square (its ``meshgrid(y, x)`` has shape ``(len(x), len(y))`` and is raveled against the
  window in the other order; only square windows get matching coordinates). Here every cell keeps
  its own (row, col), so clipped windows are fitted correctly.
* Failures: besides a fit that does not converge within the iterations (or produces NaN/inf), a
  fit whose amplitude or sigma is not positive, or whose centre leaves the window (by more than half
  a pixel), keeps the original keypoint. The official code accepts any converged fit: on an all-zero
  window it moves the keypoint to the centre cell, on a flat window it returns an arbitrary centre
  with a huge sigma, on a slope a centre far outside the window.
"""
from __future__ import annotations

import torch
from torch import Tensor


def gather_windows(heatmaps: Tensor, channel: Tensor, row: Tensor, col: Tensor, kernel: int
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The ``(2 kernel + 1)``-square windows around integer centres, clipped to the map.

    Args:
        heatmaps: (C, H, W).
        channel, row, col: (M,) long; row/col must lie inside the map.
        kernel: half window size.

    Returns:
        values (M, S, S) (0 outside the map), row_inside (M, S), col_inside (M, S) (which window rows
        and columns lie in the map: the clipped window is their outer product), and the offsets
        (S,) of the window rows/columns from the centre, S = 2 kernel + 1.
    """
    _, h, w = heatmaps.shape
    offsets = torch.arange(-kernel, kernel + 1, device=heatmaps.device)
    rr = row[:, None] + offsets
    cc = col[:, None] + offsets
    row_inside = (rr >= 0) & (rr < h)
    col_inside = (cc >= 0) & (cc < w)
    flat = (channel[:, None, None] * (h * w) + rr.clamp(0, h - 1)[:, :, None] * w
            + cc.clamp(0, w - 1)[:, None, :])
    values = heatmaps.reshape(-1)[flat] * (row_inside[:, :, None] & col_inside[:, None, :])
    return values, row_inside, col_inside, offsets


def _coefficients() -> tuple[Tensor, Tensor]:
    """Constant maps from separable moments to the normal equations (see :func:`_normal_equations`)."""
    # JᵀJ[i, j] / (f_i f_j) as a sum of P_m Q_n (index 5 m + n), parameters (A, r0, c0, s)
    terms = {(0, 0): [(0, 0)], (0, 1): [(1, 0)], (0, 2): [(0, 1)], (0, 3): [(2, 0), (0, 2)],
             (1, 1): [(2, 0)], (1, 2): [(1, 1)], (1, 3): [(3, 0), (1, 2)], (2, 2): [(0, 2)],
             (2, 3): [(2, 1), (0, 3)], (3, 3): [(4, 0), (2, 2), (2, 2), (0, 4)]}
    jtj = torch.zeros(25, 16, dtype=torch.float64)
    for (i, j), mn in terms.items():
        for m, n in mn:
            jtj[5 * m + n, 4 * i + j] += 1
            if i != j:
                jtj[5 * m + n, 4 * j + i] += 1
    # Jᵀv[i] / f_i as a sum of B_mn (index 3 m + n)
    jv = torch.zeros(9, 4, dtype=torch.float64)
    for i, mn in enumerate([[(0, 0)], [(1, 0)], [(0, 1)], [(2, 0), (0, 2)]]):
        for m, n in mn:
            jv[3 * m + n, i] += 1
    return jtj, jv


_JTJ, _JV = _coefficients()


def _normal_equations(params: Tensor, y: Tensor, x: Tensor, row_mask: Tensor, col_mask: Tensor, values: Tensor,
                      sum_v2: Tensor, jtj_map: Tensor, jv_map: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Cost (M,), JᵀJ (M, 4, 4) and gradient Jᵀr (M, 4) of the least-squares fit at ``params``.

    The Gaussian and the clipped window are separable: with ``a_i = exp(-u_i^2 / 2s^2)`` over the
    window rows (``u = y - r0``) and ``b_j`` likewise over the columns (``w = x - c0``), the model is
    ``A a_i b_j`` and the Jacobian columns are ``f_k a_i b_j p_k(u_i, w_j)`` with
    ``f = (1, A/s^2, A/s^2, A/s^3)`` and ``p = (1, u, w, u^2 + w^2)``. So every sum over the
    window's cells factorises into row moments ``P_m = sum a_i^2 u_i^m``, column moments
    ``Q_n = sum b_j^2 w_j^n`` (m, n <= 4) and the bilinear forms ``B_mn = (a u^m)ᵀ V (b w^n)``
    (m, n <= 2) of the window values V: O(S) work per window instead of O(S^2) elementwise.
    """
    m = params.shape[0]
    amp, r0, c0, s = params.unbind(-1)
    inv = 0.5 / (s * s)
    u = y - r0[:, None]
    w = x - c0[:, None]
    a = row_mask * torch.exp(-u * u * inv[:, None])
    b = col_mask * torch.exp(-w * w * inv[:, None])
    powers = torch.arange(5, dtype=params.dtype, device=params.device)
    up = u[..., None] ** powers  # (M, S, 5)
    wp = w[..., None] ** powers
    moments_r = ((a * a)[..., None] * up).sum(1)  # (M, 5)
    moments_c = ((b * b)[..., None] * wp).sum(1)
    pq = (moments_r[:, :, None] * moments_c[:, None, :]).reshape(m, 25)
    bil = (a[..., None] * up[..., :3]).transpose(1, 2) @ values @ (b[..., None] * wp[..., :3])  # (M, 3, 3)
    f = torch.stack((torch.ones_like(amp), amp / (s * s), amp / (s * s), amp / (s * s * s)), -1)
    jtj = (pq @ jtj_map).view(m, 4, 4) * f[:, :, None] * f[:, None, :]
    jv = (bil.reshape(m, 9) @ jv_map) * f
    grad = amp[:, None] * jtj[:, :, 0] - jv  # Jᵀ(A g - v), with Jᵀg = JᵀJ[:, 0] since J_A = g
    cost = amp * amp * pq[:, 0] - 2 * amp * bil[:, 0, 0] + sum_v2
    return cost, jtj, grad


def fit_gaussians(values: Tensor, row_mask: Tensor, col_mask: Tensor, y: Tensor, x: Tensor, init: Tensor,
                  iterations: int = 30, tol: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Least-squares fits of ``A exp(-((x - c0)^2 + (y - r0)^2) / (2 s^2))`` to windows, batched
    Levenberg-Marquardt (Marquardt's diagonal scaling, fixed number of iterations).

    Args:
        values: (M, R, C) window values; cells outside the masks must be 0.
        row_mask, col_mask: (M, R), (M, C) bool: the window's cells are their outer product.
        y, x: (R,), (C,) row / column coordinates of the window cells.
        init: (M, 4) initial (A, r0, c0, s).
        iterations: LM iterations at most (the loop stops early once every fit's step is below 1e-9
            relative).
        tol: convergence test: a final Gauss-Newton step must move the centre by less than ``tol``
            pixels and A, s by less than ``tol`` relative.

    Returns:
        params (M, 4) fitted (A, r0, c0, s) in the dtype of ``init`` (s may come out negative: only
        s^2 enters the model, as with scipy); converged (M,) bool (finite, converged, A > 0, s != 0;
        the window check is the caller's).
    """
    dtype = torch.float32 if values.device.type == "mps" else torch.float64
    device = values.device
    values = values.to(dtype)
    row_mask, col_mask = row_mask.to(dtype), col_mask.to(dtype)
    y, x = y.to(dtype), x.to(dtype)
    params = init.to(dtype)
    jtj_map, jv_map = _JTJ.to(device, dtype), _JV.to(device, dtype)
    sum_v2 = (values * values).sum((1, 2))

    def state(p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return _normal_equations(p, y, x, row_mask, col_mask, values, sum_v2, jtj_map, jv_map)

    tiny = torch.finfo(dtype).tiny ** 0.5
    cost, jtj, grad = state(params)
    lam = torch.ones(params.shape[0], dtype=dtype, device=device)
    for it in range(iterations):
        scale = jtj.diagonal(dim1=1, dim2=2).clamp_min(tiny)  # Marquardt's scaling
        step = torch.linalg.solve_ex(jtj + torch.diag_embed(lam[:, None] * scale), -grad[..., None])[0][..., 0]
        trial = params + step
        cost_t, jtj_t, grad_t = state(trial)
        accept = cost_t <= cost  # False for NaN
        params = torch.where(accept[:, None], trial, params)
        cost = torch.where(accept, cost_t, cost)
        jtj = torch.where(accept[:, None, None], jtj_t, jtj)
        grad = torch.where(accept[:, None], grad_t, grad)
        lam = torch.where(accept, (lam / 3.0).clamp_min(1e-12), (lam * 2.0).clamp_max(1e12))
        if it % 5 == 4 and it + 1 < iterations:
            # early exit once every fit has stalled (further steps would not change the results)
            stalled = (step.abs() <= 1e-9 * (params.abs() + 1)).all(-1) | ~torch.isfinite(step).all(-1)
            if bool(stalled.all()):
                break

    scale = jtj.diagonal(dim1=1, dim2=2).clamp_min(tiny)
    gn = torch.linalg.solve_ex(jtj + torch.diag_embed(1e-12 * scale + tiny), -grad[..., None])[0][..., 0]
    amp, s = params[:, 0], params[:, 3].abs()
    converged = (torch.isfinite(params).all(-1) & torch.isfinite(gn).all(-1) & (amp > 0) & (s > 0)
                 & (gn[:, 1:3].abs().amax(-1) < tol) & (gn[:, 0].abs() < tol * amp) & (gn[:, 3].abs() < tol * s))
    return params.to(init.dtype), converged


def gaussian_refine(poses: Tensor, scores: Tensor, heatmaps: Tensor, image_index: Tensor | None = None,
                    kernel: int = 6, threshold: float = 0.05, sigma: float = 2.0, iterations: int = 30,
                    tol: float = 1e-4) -> Tensor:
    """Official MATCH_HMP ``adjust``: keypoints moved to the centre of a Gaussian fitted around them.

    Args:
        poses: (P, K, 2) (x, y) in heatmap pixels (base input pixels for the upsampled heatmaps).
        scores: (P, K) keypoint scores; only keypoints with score > ``threshold`` are refined
            (official TEST.ADJUST_THRESHOLD 0.05).
        heatmaps: (K', H, W), or (N, K', H, W) with ``image_index``; the first K channels are the
            keypoints' (a trailing center channel is ignored).
        image_index: (P,) image of each pose when ``heatmaps`` is batched.
        kernel: half window size (official TEST.GUASSIAN_KERNEL 6: 13x13 windows).
        sigma: initial Gaussian sigma (official DATASET.SIGMA 2).
        iterations, tol: see :func:`fit_gaussians`.

    Returns:
        (P, K, 2) refined poses; keypoints below the threshold or whose fit failed are unchanged.
    """
    p, k, _ = poses.shape
    if heatmaps.dim() == 3:
        heatmaps = heatmaps[None]
        image_index = torch.zeros(p, dtype=torch.long, device=poses.device)
    elif image_index is None:
        raise ValueError("batched heatmaps (N, K', H, W) need image_index")
    n, c, h, w = heatmaps.shape
    if c < k:
        raise ValueError(f"heatmaps have {c} channels, poses {k} keypoints")
    selected = scores > threshold
    if p == 0 or not bool(selected.any()):
        return poses
    sel = selected.nonzero()  # (M0, 2) person, keypoint
    xy = poses[sel[:, 0], sel[:, 1]]
    col = torch.floor(xy[:, 0] + 0.5).clamp(0, w - 1).long()
    row = torch.floor(xy[:, 1] + 0.5).clamp(0, h - 1).long()
    channel = image_index.to(poses.device)[sel[:, 0]] * c + sel[:, 1]
    key = (channel * h + row) * w + col
    unique, inverse = torch.unique(key, return_inverse=True)  # one fit per distinct window (official cache)
    u_col, u_row, u_channel = unique % w, torch.div(unique, w, rounding_mode="floor") % h, unique // (h * w)
    values, row_inside, col_inside, offsets = gather_windows(heatmaps.reshape(n * c, h, w), u_channel, u_row,
                                                             u_col, kernel)
    centre = values[:, kernel, kernel].to(torch.float32 if values.device.type == "mps" else torch.float64)
    zero = torch.zeros_like(centre)
    init = torch.stack((centre, zero, zero, torch.full_like(centre, sigma)), -1)  # relative to the centre cell
    params, ok = fit_gaussians(values, row_inside, col_inside, offsets, offsets, init, iterations, tol)
    r0, c0 = params[:, 1], params[:, 2]
    # the fitted centre must stay within the clipped window (half a pixel of margin)
    ok &= (u_row + r0 >= (u_row - kernel).clamp_min(0) - 0.5) & (u_row + r0 <= (u_row + kernel).clamp_max(h - 1) + 0.5)
    ok &= (u_col + c0 >= (u_col - kernel).clamp_min(0) - 0.5) & (u_col + c0 <= (u_col + kernel).clamp_max(w - 1) + 0.5)
    fitted = torch.stack((u_col + c0, u_row + r0), -1).to(poses.dtype)[inverse]
    new = torch.where(ok[inverse, None], fitted, xy)
    out = poses.clone()
    out[sel[:, 0], sel[:, 1]] = new
    return out
