"""The decoders' last layer: raw network outputs -> extended SSVI (eSSVI) parameters per grid row -> total
variance, free of static arbitrage by construction for every input.

One surface (one day) has, per grid row ``j`` (tenor or expiry ``T_j``, ascending), an SSVI slice with its
own correlation (eSSVI, Hendriks and Martini 2019): ATM total variance ``theta_j``, ``psi_j = theta_j phi_j``
and ``rho_j``,

    w(k, T_j) = theta_j / 2 * (1 + rho_j phi_j k + sqrt((phi_j k + rho_j)^2 + 1 - rho_j^2)),   k = ln(K/F)

held as its two wing slopes ``s+_j = psi_j (1 + rho_j) / 2`` and ``s-_j = psi_j (1 - rho_j) / 2`` (the slopes
of ``w`` in ``k`` as ``k -> +inf`` and ``-inf``; ``psi = s+ + s-``, ``rho = (s+ - s-) / psi``), so that
``w = (theta + a k + sqrt((theta + a k)^2 + 4 s+ s- k^2)) / 2`` with ``a = s+ - s-``.

Static arbitrage, in these variables (proofs below):

* calendar between rows ``j - 1`` and ``j``: ``theta_j >= theta_{j-1}``, both wing slopes non-decreasing,
  ``psi_j / theta_j <= psi_{j-1} / theta_{j-1}`` (phi non-increasing);
* butterfly in each row (Gatheral and Jacquier 2014, Theorem 4.2): ``theta phi (1 + |rho|) < 4`` and
  ``theta phi^2 (1 + |rho|) <= 4``, i.e. ``max(s+, s-) < 2`` and ``psi max(s+, s-) <= 2 theta``.

The raw vector (length ``3 R`` for ``R`` rows: ``a``, ``b``, ``e``, each ``R`` long) maps to parameters that
satisfy all of them, whatever its values:

* ``theta_j = sum_{i <= j} (T_i - T_{i-1}) (v_min + v_scale softplus(a_i))`` (``T_0 = 0``): strictly
  increasing, growth ``q_j = theta_j / theta_{j-1} > 1``;
* first row: ``psi_1 = exp(b_1) sqrt(theta_1)`` split into wings by ``rho_1 = rho_max tanh(e_1)``, then
  scaled down by one factor (``rho`` kept) to the butterfly bounds below;
* row ``j > 1``: a proposed increase of ``psi`` by ``sigmoid(b_j) (q_j - 1) psi_{j-1}`` (so ``psi / theta``
  cannot rise), shared between the wings in the proportion ``sigmoid(e_j)`` (both wings non-decreasing;
  ``rho`` moves toward the wing that gets more), is shortened by the largest factor ``t in [0, 1]`` that
  keeps row ``j`` inside the butterfly bounds ``max(s+, s-) <= 2 c`` and ``psi max(s+, s-) <= 2 c theta_j``
  (``c < 1``). Every constraint rises with the increase and ``t = 0`` satisfies them all (row ``j - 1`` did,
  and ``theta_j > theta_{j-1}``), so ``t`` has a closed form: the smallest of 1, the two linear bounds and
  the positive roots of the two quadratics ``(psi + t D)(s + t d) = 2 c theta_j``.

Calendar proof (the sufficient condition of Hendriks and Martini in slope form). Write
``w = theta g(psi k / theta; rho)`` with ``g(x; rho) = (1 + rho x + sqrt(x^2 + 2 rho x + 1)) / 2``. With
``u = (1 + rho) / 2``, ``v = (1 - rho) / 2``, ``g`` is the positive root of ``(g - u x)(g + v x) = g`` and
both factors are positive; for ``y >= 0``, ``y >= g`` iff ``(y - u x)(y + v x) >= y``. Let
``lam = psi_2 / psi_1``. Slopes non-decreasing means ``lam >= max(u_1 / u_2, v_1 / v_2)``; then for
``x >= 0``: ``lam g_2 - u_1 x >= lam (g_2 - u_2 x) > 0`` and ``lam g_2 + v_1 x >= g_2 + v_2 x`` (if ``v_1 <
v_2``, ``(lam - 1) g_2 >= (u_1 / u_2 - 1) u_2 x = (v_2 - v_1) x``), so ``(lam g_2 - u_1 x)(lam g_2 + v_1 x)
>= lam (g_2 - u_2 x)(g_2 + v_2 x) = lam g_2``, i.e. ``lam g(x; rho_2) >= g(x; rho_1)``; ``x <= 0`` is the
mirror image. ``w`` is non-decreasing in ``theta`` at fixed ``psi`` and ``rho`` (``dw/dtheta = (1 + (theta +
a k) / S) / 2 >= 0``), and ``theta_2 >= lam theta_1`` (phi non-increasing), so
``w_2(k) >= lam theta_1 g(psi_1 k / theta_1; rho_2) >= theta_1 g(psi_1 k / theta_1; rho_1) = w_1(k)`` for
every ``k``. A butterfly-free slice has call prices decreasing and convex in strike everywhere, hence on any
strike grid.

The generator's truth (SSVI: one rho, power-law phi, ``eta (1 + |rho|) <= 2``) lies inside this family.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "RHO_MAX",
    "SSVIHead",
    "calibrate_raw",
    "essvi_rho_psi",
    "ssvi_params",
    "ssvi_total_variance",
]

BUTTERFLY_MARGIN = 0.98  # c: the caps are 98% of Gatheral-Jacquier's bounds
RHO_MAX = 0.999  # |rho_1| < 1: both wings of the first row have a positive slope
_KEEP_RHO = math.log((1.0 + math.tanh(-0.7)) / (1.0 - math.tanh(-0.7)))  # shares that keep rho_1
V_MIN = 1e-4  # minimum forward variance per year between rows (1 vol point squared)


def _softplus_inv(v: torch.Tensor) -> torch.Tensor:
    return v + torch.log(-torch.expm1(-v))


def _min(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.minimum`` (NaN propagates) by ``where``: forward-mode AD has no formula of its own for
    ``minimum`` and decomposes it op by op (measured 4.7 ms against 20 us a call), which made the refinement's
    Jacobians and the output metric slow; values are identical."""
    return torch.where(torch.isnan(b) | (b < a), b, a)


def ssvi_params(
    raw: torch.Tensor, tenor_years: torch.Tensor, *, v_scale: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw outputs ``(B, 3R)`` and row tenors ``(B, R)`` or ``(R,)`` in years (ACT/365, ascending) to
    ``theta (B, R)`` (ATM total variance) and the wing slopes ``s+ (B, R)``, ``s- (B, R)`` (total variance
    per unit of log-moneyness), arbitrage-free as in the module docstring.

    ``v_scale``: forward variance per unit of ``softplus(a)`` (scalar or ``(R,)``), set from the training
    days so that the network works near the linear part of softplus.
    """
    b_sz = raw.shape[0]
    r_rows = raw.shape[1] // 3
    if raw.shape[1] != 3 * r_rows or r_rows < 1:
        raise ValueError(f"ssvi_params: raw width {raw.shape[1]} is not 3 R")
    t = torch.as_tensor(tenor_years, dtype=raw.dtype, device=raw.device)
    t = t.expand(b_sz, r_rows) if t.dim() == 1 else t
    dt = torch.diff(t, dim=1, prepend=torch.zeros_like(t[:, :1])).clamp_min(0.0)  # (B, R)
    a, b, e = raw[:, :r_rows], raw[:, r_rows : 2 * r_rows], raw[:, 2 * r_rows :]
    fwd_var = V_MIN + v_scale * nn.functional.softplus(a)
    theta = torch.cumsum(dt * fwd_var, dim=1)  # (B, R), strictly increasing
    c = BUTTERFLY_MARGIN
    # first row: psi and rho, scaled down (rho kept) into the butterfly bounds
    psi = torch.exp(b[:, 0].clamp(-30.0, 30.0)) * torch.sqrt(theta[:, 0])  # no float32 overflow below
    rho = RHO_MAX * torch.tanh(e[:, 0])
    big = 0.5 * psi * (1.0 + rho.abs())  # the steeper wing
    m = _min((2.0 * c / big).clamp_max(1.0), torch.sqrt(2.0 * c * theta[:, 0] / (psi * big)))
    sp, sm = [m * 0.5 * psi * (1.0 + rho)], [m * 0.5 * psi * (1.0 - rho)]
    share = torch.sigmoid(e[:, 1:])
    grow = torch.sigmoid(b[:, 1:]) * (theta[:, 1:] / theta[:, :-1] - 1.0)  # (B, R - 1): at most q_j - 1
    for j in range(1, r_rows):
        p0, m0 = sp[-1], sm[-1]
        inc = grow[:, j - 1] * (p0 + m0)  # proposed rise of psi, D
        dp, dm = share[:, j - 1] * inc, (1.0 - share[:, j - 1]) * inc
        lim = 2.0 * c * theta[:, j]
        tt: torch.Tensor | None = None
        for s0, d in ((p0, dp), (m0, dm)):
            cap = (2.0 * c - s0).clamp_min(0.0) / d.clamp_min(1e-30)
            tt = cap.clamp_max(1.0) if tt is None else _min(tt, cap)
            # (psi0 + t D)(s0 + t d) <= lim: D d t^2 + (psi0 d + s0 D) t + psi0 s0 - lim <= 0
            qa, qb, qc = inc * d, (p0 + m0) * d + s0 * inc, ((p0 + m0) * s0 - lim).clamp_max(0.0)
            root = 2.0 * (-qc) / (qb + torch.sqrt(qb * qb - 4.0 * qa * qc)).clamp_min(1e-30)
            tt = _min(tt, root)
        assert tt is not None
        sp.append(p0 + tt * dp)
        sm.append(m0 + tt * dm)
    return theta, torch.stack(sp, dim=1), torch.stack(sm, dim=1)


def ssvi_total_variance(
    theta: torch.Tensor, s_plus: torch.Tensor, s_minus: torch.Tensor, log_moneyness: torch.Tensor
) -> torch.Tensor:
    """``w(k, T_j)`` on ``(B, R, K)`` from ``theta``, the wing slopes ``s+``, ``s- (B, R)`` and ``k (K,)``:
    ``(theta + a k + sqrt((theta + a k)^2 + 4 s+ s- k^2)) / 2`` with ``a = s+ - s-``."""
    k = torch.as_tensor(log_moneyness, dtype=theta.dtype, device=theta.device)
    th = theta[..., None]
    lin = th + (s_plus - s_minus)[..., None] * k  # (B, R, K)
    return 0.5 * (lin + torch.sqrt(lin * lin + 4.0 * (s_plus * s_minus)[..., None] * k * k))


def essvi_rho_psi(s_plus: torch.Tensor, s_minus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The usual eSSVI parameters ``rho``, ``psi = theta phi`` from the wing slopes."""
    psi = s_plus + s_minus
    return (s_plus - s_minus) / psi, psi


class SSVIHead(nn.Module):
    """Standardised network output ``(B, 3R)`` -> implied vols ``(B, R, K)`` on the grid.

    ``raw = u_mean + u_scale * out``; the statistics come from SSVI calibrations of the training days
    (:meth:`fit`), so the network works in standardised units. ``log_moneyness`` (K,) is the grid's
    columns; tenors are given per call (the CVAE's expiries move day to day) or fixed (``tenor_years``).
    """

    u_mean: torch.Tensor
    u_scale: torch.Tensor
    v_scale: torch.Tensor
    k: torch.Tensor
    tenors: torch.Tensor

    def __init__(
        self, rows: int, log_moneyness: tuple[float, ...], tenor_years: tuple[float, ...] | None = None
    ) -> None:
        super().__init__()
        self.rows = rows
        n_raw = 3 * rows
        self.register_buffer("k", torch.tensor(log_moneyness, dtype=torch.float32))
        t = tenor_years if tenor_years is not None else (0.0,) * rows  # unused: tenors come per call
        self.register_buffer("tenors", torch.tensor(t, dtype=torch.float32))
        self.fixed_tenors = tenor_years is not None
        # a neutral start (about 20% vol, rho -0.6) until fit() sees data
        self.register_buffer("v_scale", torch.tensor(0.01))
        mean = torch.zeros(n_raw)
        mean[:rows] = float(_softplus_inv(torch.tensor(3.9)))
        mean[2 * rows] = -0.7  # rho_1 = tanh(-0.7)
        mean[2 * rows + 1 :] = _KEEP_RHO
        self.register_buffer("u_mean", mean)
        self.register_buffer("u_scale", torch.ones(n_raw))

    @property
    def n_raw(self) -> int:
        return 3 * self.rows

    def _tenors(self, tenor_years: torch.Tensor | None, b: int) -> torch.Tensor:
        if tenor_years is None:
            if not self.fixed_tenors:
                raise ValueError("SSVIHead: this grid's tenors change per day; pass tenor_years")
            return self.tenors
        return tenor_years

    def raw(self, out: torch.Tensor) -> torch.Tensor:
        return self.u_mean + self.u_scale * out

    def total_variance(self, raw: torch.Tensor, tenor_years: torch.Tensor | None = None) -> torch.Tensor:
        """Raw (un-standardised) parameters -> ``w (B, R, K)``."""
        t = self._tenors(tenor_years, raw.shape[0])
        theta, sp, sm = ssvi_params(raw, t, v_scale=self.v_scale)
        return ssvi_total_variance(theta, sp, sm, self.k)

    def vols(self, raw: torch.Tensor, tenor_years: torch.Tensor | None = None) -> torch.Tensor:
        """Raw parameters -> implied vols ``(B, R, K)`` (> 0)."""
        t = self._tenors(tenor_years, raw.shape[0])
        t = t.expand(raw.shape[0], self.rows) if t.dim() == 1 else t
        return torch.sqrt(self.total_variance(raw, t) / t[..., None])

    def forward(self, out: torch.Tensor, tenor_years: torch.Tensor | None = None) -> torch.Tensor:
        return self.vols(self.raw(out), tenor_years)

    @torch.no_grad()
    def fit(
        self,
        vols: torch.Tensor,
        tenor_years: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
        *,
        smooth: float = 1e-4,
    ) -> torch.Tensor:
        """Calibrate every training surface ``vols (N, R, K)`` and set the raw statistics from them;
        returns the standardised calibrated outputs ``(N, 3R)`` (what the network should produce).
        ``smooth``: :func:`calibrate_raw`'s row-smoothness penalty."""
        t = self._tenors(tenor_years, vols.shape[0])
        t = t.expand(vols.shape[0], self.rows) if t.dim() == 1 else t
        w_atm = _atm_total_variance(vols, t, self.k)
        fv = torch.diff(w_atm, dim=1, prepend=torch.zeros_like(w_atm[:, :1])) / torch.diff(
            t, dim=1, prepend=torch.zeros_like(t[:, :1])
        ).clamp_min(1e-6)
        self.v_scale.fill_(max(float(fv.clamp_min(V_MIN).median()) / 4.0, 1e-4))
        raw = calibrate_raw(vols, t, self.k, v_scale=float(self.v_scale), weight=weight, smooth=smooth)
        mean = raw.mean(dim=0)
        sd = raw.std(dim=0) if raw.shape[0] > 1 else torch.ones_like(mean)
        sd = torch.where(torch.isfinite(sd), sd, torch.ones_like(sd)).clamp_min(1e-3)
        self.u_mean.copy_(mean.to(self.u_mean.dtype))
        self.u_scale.copy_(sd.to(self.u_scale.dtype))
        return ((raw - mean) / sd).to(vols.dtype)

    @torch.no_grad()
    def output_metric(
        self, u: torch.Tensor, tenor_years: torch.Tensor | None = None, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The mean over surfaces of ``J.T diag(weight) J`` (P, P), float64, where ``J`` (R K, P) is the
        Jacobian of the decoded vols in the standardised outputs at ``u (N, P)`` (what :meth:`fit`
        returns), ``weight`` like the grid (None: 1): the first-order metric in which a parameter error
        costs the squared vol error it causes (:func:`volfast.models._norm.latent_init`'s ``metric``)."""
        n, p = u.shape
        t = self._tenors(tenor_years, n).to(torch.float64)
        t = t.expand(n, self.rows) if t.dim() == 1 else t
        mean, scale = self.u_mean.to(torch.float64), self.u_scale.to(torch.float64)
        v_scale, k = float(self.v_scale), self.k.to(torch.float64)

        def vols(uu: torch.Tensor) -> torch.Tensor:
            theta, sp, sm = ssvi_params(mean + scale * uu, t, v_scale=v_scale)
            return torch.sqrt(ssvi_total_variance(theta, sp, sm, k) / t[..., None]).flatten(1)

        from volfast.models._refine import forward_jacobian

        u64 = u.to(torch.float64)
        sw = None if weight is None else weight.to(torch.float64).flatten(1).clamp_min(0.0).sqrt()
        jac = forward_jacobian(vols, u64)  # (N, R K, P), forward mode
        if sw is not None:
            jac = jac * sw[..., None]
        g = torch.einsum("ndp,ndq->pq", jac, jac) / n
        return g


def _atm_total_variance(vols: torch.Tensor, t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """ATM total variance per row, linear in k between the two columns around 0 (or the nearest column),
    made increasing in the row (calendar order), (N, R)."""
    kk = k.to(torch.float64)
    w = vols.to(torch.float64) ** 2 * t.to(torch.float64)[..., None]
    hi = int(torch.searchsorted(kk, torch.tensor(0.0, dtype=torch.float64)))
    if 0 < hi < kk.numel():
        lo = hi - 1
        f = float(-kk[lo] / (kk[hi] - kk[lo]))
        atm = (1 - f) * w[..., lo] + f * w[..., hi]
    else:
        atm = w[..., int(torch.argmin(kk.abs()))]
    atm = torch.cummax(atm, dim=1).values
    return atm


def calibrate_raw(
    vols: torch.Tensor,
    tenor_years: torch.Tensor,
    log_moneyness: torch.Tensor,
    *,
    v_scale: float,
    iters: int = 300,
    smooth: float = 1e-4,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Least-squares eSSVI raw parameters ``(N, 3R)`` of each surface ``vols (N, R, K)`` (vol error,
    float64 L-BFGS on all surfaces at once: the problems are independent, so the joint optimum is each
    one's) plus ``smooth`` times the squared second differences of the forward-variance parameters and
    first differences of the psi elasticities and the wing shares along the rows (identifiable parameters
    that vary smoothly from day to day, so that a low-dimensional latent holds them). Starts from the ATM
    term structure with one rho. ``weight`` (like ``vols``): each cell's squared error times it."""
    n, r_rows, _ = vols.shape
    v = vols.to(torch.float64)
    t = tenor_years.to(torch.float64)
    k = log_moneyness.to(torch.float64)
    wt = None if weight is None else weight.to(torch.float64)
    w_atm = _atm_total_variance(v, t, k)
    dt = torch.diff(t, dim=1, prepend=torch.zeros_like(t[:, :1])).clamp_min(1e-9)
    fv = torch.diff(w_atm, dim=1, prepend=torch.zeros_like(w_atm[:, :1])) / dt
    a0 = _softplus_inv(((fv - V_MIN) / v_scale).clamp_min(1e-4))
    raw = torch.cat(
        [
            a0,
            torch.zeros(n, r_rows, dtype=torch.float64),
            torch.full((n, 1), -0.7, dtype=torch.float64),
            torch.full((n, r_rows - 1), _KEEP_RHO, dtype=torch.float64),  # shares that keep rho
        ],
        1,
    ).requires_grad_(True)
    opt = torch.optim.LBFGS(
        [raw],
        lr=1.0,
        max_iter=iters,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        theta, sp, sm = ssvi_params(raw, t, v_scale=v_scale)
        w = ssvi_total_variance(theta, sp, sm, k)
        sq = (torch.sqrt(w / t[..., None]) - v) ** 2
        loss = (sq if wt is None else wt * sq).sum()
        if smooth > 0 and r_rows > 2:  # smooth in the row: identifiable, low-dimensional parameters
            a, b, e = raw[:, :r_rows], raw[:, r_rows + 1 : 2 * r_rows], raw[:, 2 * r_rows + 1 :]
            loss = loss + smooth * v[0].numel() * (
                torch.diff(a, n=2, dim=1).square().sum()
                + torch.diff(b, dim=1).square().sum()
                + torch.diff(e, dim=1).square().sum()
            )
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    out = raw.detach()
    if not bool(torch.isfinite(out).all()):
        raise ValueError("eSSVI calibration of the training surfaces diverged (non-finite parameters)")
    return out.to(vols.dtype) if vols.dtype == torch.float64 else out.float()
