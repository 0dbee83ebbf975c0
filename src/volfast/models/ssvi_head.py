"""The decoders' last layer: raw network outputs -> SSVI parameters per grid row -> total variance, free of
static arbitrage by construction for every input.

One surface (one day) has, per grid row ``j`` (tenor or expiry ``T_j``, ascending), the ATM total variance
``theta_j`` and ``psi_j = theta_j phi_j``, and one correlation ``rho``; its slices are SSVI (Gatheral and
Jacquier 2014):

    w(k, T_j) = theta_j / 2 * (1 + rho phi_j k + sqrt((phi_j k + rho)^2 + 1 - rho^2)),   k = ln(K/F)

The raw vector (length ``2 R + 1`` for ``R`` rows) maps to parameters so that, whatever its values:

* ``theta_j = sum_{i <= j} (T_i - T_{i-1}) (v_min + v_scale softplus(a_i))`` (``T_0 = 0``): a forward
  variance per row of at least ``v_min``, so theta is strictly increasing in ``T``;
* ``rho = rho_max tanh(r)`` with ``rho_max < 1``;
* ``log psi~_1 = b_1 + log(theta_1) / 2`` and ``log psi~_j = log psi~_{j-1} + sigmoid(b_j) (log theta_j -
  log theta_{j-1})``: psi~ non-decreasing and ``psi~ / theta`` non-increasing in the row;
* ``psi_j = min(psi~_j, 4 c / (1 + |rho|), sqrt(4 c theta_j / (1 + |rho|)))`` with ``c < 1``: a minimum of
  non-decreasing sequences whose ratios to theta are all non-increasing, so psi is non-decreasing and
  ``phi_j = psi_j / theta_j`` non-increasing.

No butterfly arbitrage in any slice: ``theta phi (1 + |rho|) < 4`` and ``theta phi^2 (1 + |rho|) <= 4``
(Gatheral and Jacquier 2014, Theorem 4.2), which the two caps are. No calendar arbitrage
between rows: with one rho, ``w = theta h(phi k)`` with
``h(x) = (1 + rho x + sqrt((x + rho)^2 + 1 - rho^2)) / 2``.
Raising theta at fixed phi scales w up; raising theta at fixed psi changes w by ``h(x) - x h'(x) =
(1 + (1 + rho x) / sqrt(x^2 + 2 rho x + 1)) / 2 >= 0``. Row ``j`` is reached from row ``j - 1`` by the first
move (to ``psi_j``, since ``psi_j >= psi_{j-1}``) then the second (since ``phi_j <= phi_{j-1}``), so
``w(k, T_j) >= w(k, T_{j-1})`` for every k (the discrete form of their Theorem 4.1). A butterfly-free slice
has call prices decreasing and convex in strike everywhere, hence on any strike grid.

The generator's truth (SSVI, power-law phi, ``eta (1 + |rho|) <= 2``) lies inside this family.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "RHO_MAX",
    "SSVIHead",
    "calibrate_raw",
    "ssvi_params",
    "ssvi_total_variance",
]

RHO_MAX = 0.999  # |rho| < 1 keeps the wings' calendar margin (1 - |rho|) / 2 positive
BUTTERFLY_MARGIN = 0.98  # c: the caps are 98% of Gatheral-Jacquier's bounds
V_MIN = 1e-4  # minimum forward variance per year between rows (1 vol point squared)


def _softplus_inv(v: torch.Tensor) -> torch.Tensor:
    return v + torch.log(-torch.expm1(-v))


def ssvi_params(
    raw: torch.Tensor, tenor_years: torch.Tensor, *, v_scale: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw outputs ``(B, 2R + 1)`` and row tenors ``(B, R)`` or ``(R,)`` in years (ACT/365, ascending) to
    ``theta (B, R)``, ``psi (B, R)`` (both in total-variance units) and ``rho (B,)``.

    ``v_scale``: forward variance per unit of ``softplus(a)`` (scalar or ``(R,)``), set from the training
    days so that the network works near the linear part of softplus.
    """
    b_sz = raw.shape[0]
    r_rows = (raw.shape[1] - 1) // 2
    if raw.shape[1] != 2 * r_rows + 1:
        raise ValueError(f"ssvi_params: raw width {raw.shape[1]} is not 2 R + 1")
    t = torch.as_tensor(tenor_years, dtype=raw.dtype, device=raw.device)
    t = t.expand(b_sz, r_rows) if t.dim() == 1 else t
    dt = torch.diff(t, dim=1, prepend=torch.zeros_like(t[:, :1])).clamp_min(0.0)  # (B, R)
    a, b, r = raw[:, :r_rows], raw[:, r_rows : 2 * r_rows], raw[:, 2 * r_rows]
    fwd_var = V_MIN + v_scale * nn.functional.softplus(a)
    theta = torch.cumsum(dt * fwd_var, dim=1)  # (B, R), strictly increasing
    rho = RHO_MAX * torch.tanh(r)  # (B,)
    one_rho = 1.0 + rho.abs()[:, None]
    lt = torch.log(theta)
    # log psi~: a start at row 1, then each row's elasticity d log psi / d log theta in (0, 1)
    steps = torch.sigmoid(b[:, 1:]) * torch.diff(lt, dim=1)
    log_psi = torch.cumsum(torch.cat([b[:, :1] + 0.5 * lt[:, :1], steps], dim=1), dim=1)
    cap = torch.minimum(
        4.0 * BUTTERFLY_MARGIN / one_rho, torch.sqrt(4.0 * BUTTERFLY_MARGIN * theta / one_rho)
    )
    psi = torch.minimum(torch.exp(log_psi), cap)
    return theta, psi, rho


def ssvi_total_variance(
    theta: torch.Tensor, psi: torch.Tensor, rho: torch.Tensor, log_moneyness: torch.Tensor
) -> torch.Tensor:
    """``w(k, T_j)`` on ``(B, R, K)`` from ``theta, psi (B, R)``, ``rho (B,)`` and ``k (K,)``."""
    k = torch.as_tensor(log_moneyness, dtype=theta.dtype, device=theta.device)
    phi = (psi / theta)[..., None]  # (B, R, 1)
    rh = rho[:, None, None]
    x = phi * k  # (B, R, K)
    return 0.5 * theta[..., None] * (1.0 + rh * x + torch.sqrt((x + rh) ** 2 + 1.0 - rh * rh))


class SSVIHead(nn.Module):
    """Standardised network output ``(B, 2R + 1)`` -> implied vols ``(B, R, K)`` on the grid.

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
        n_raw = 2 * rows + 1
        self.register_buffer("k", torch.tensor(log_moneyness, dtype=torch.float32))
        t = tenor_years if tenor_years is not None else (0.0,) * rows  # unused: tenors come per call
        self.register_buffer("tenors", torch.tensor(t, dtype=torch.float32))
        self.fixed_tenors = tenor_years is not None
        # a neutral start (about 20% vol, rho -0.6) until fit() sees data
        self.register_buffer("v_scale", torch.tensor(0.01))
        mean = torch.zeros(n_raw)
        mean[:rows] = float(_softplus_inv(torch.tensor(3.9)))
        mean[2 * rows] = -0.7
        self.register_buffer("u_mean", mean)
        self.register_buffer("u_scale", torch.ones(n_raw))

    @property
    def n_raw(self) -> int:
        return 2 * self.rows + 1

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
        theta, psi, rho = ssvi_params(raw, t, v_scale=self.v_scale)
        return ssvi_total_variance(theta, psi, rho, self.k)

    def vols(self, raw: torch.Tensor, tenor_years: torch.Tensor | None = None) -> torch.Tensor:
        """Raw parameters -> implied vols ``(B, R, K)`` (> 0)."""
        t = self._tenors(tenor_years, raw.shape[0])
        t = t.expand(raw.shape[0], self.rows) if t.dim() == 1 else t
        return torch.sqrt(self.total_variance(raw, t) / t[..., None])

    def forward(self, out: torch.Tensor, tenor_years: torch.Tensor | None = None) -> torch.Tensor:
        return self.vols(self.raw(out), tenor_years)

    @torch.no_grad()
    def fit(self, vols: torch.Tensor, tenor_years: torch.Tensor | None = None) -> torch.Tensor:
        """Calibrate every training surface ``vols (N, R, K)`` and set the raw statistics from them;
        returns the standardised calibrated outputs ``(N, 2R + 1)`` (what the network should produce)."""
        t = self._tenors(tenor_years, vols.shape[0])
        t = t.expand(vols.shape[0], self.rows) if t.dim() == 1 else t
        w_atm = _atm_total_variance(vols, t, self.k)
        fv = torch.diff(w_atm, dim=1, prepend=torch.zeros_like(w_atm[:, :1])) / torch.diff(
            t, dim=1, prepend=torch.zeros_like(t[:, :1])
        ).clamp_min(1e-6)
        self.v_scale.fill_(max(float(fv.clamp_min(V_MIN).median()) / 4.0, 1e-4))
        raw = calibrate_raw(vols, t, self.k, v_scale=float(self.v_scale))
        mean = raw.mean(dim=0)
        sd = raw.std(dim=0) if raw.shape[0] > 1 else torch.ones_like(mean)
        sd = torch.where(torch.isfinite(sd), sd, torch.ones_like(sd)).clamp_min(1e-3)
        self.u_mean.copy_(mean.to(self.u_mean.dtype))
        self.u_scale.copy_(sd.to(self.u_scale.dtype))
        return ((raw - mean) / sd).to(vols.dtype)


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
) -> torch.Tensor:
    """Least-squares SSVI raw parameters ``(N, 2R + 1)`` of each surface ``vols (N, R, K)`` (vol error,
    float64 L-BFGS on all surfaces at once: the problems are independent, so the joint optimum is each
    one's) plus ``smooth`` times the squared second differences of the forward-variance parameters and
    first differences of the psi elasticities along the rows (identifiable parameters that vary smoothly
    from day to day, so that a low-dimensional latent holds them). Starts from the ATM term structure."""
    n, r_rows, _ = vols.shape
    v = vols.to(torch.float64)
    t = tenor_years.to(torch.float64)
    k = log_moneyness.to(torch.float64)
    w_atm = _atm_total_variance(v, t, k)
    dt = torch.diff(t, dim=1, prepend=torch.zeros_like(t[:, :1])).clamp_min(1e-9)
    fv = torch.diff(w_atm, dim=1, prepend=torch.zeros_like(w_atm[:, :1])) / dt
    a0 = _softplus_inv(((fv - V_MIN) / v_scale).clamp_min(1e-4))
    raw = torch.cat(
        [a0, torch.zeros(n, r_rows, dtype=torch.float64), torch.full((n, 1), -0.7, dtype=torch.float64)], 1
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
        theta, psi, rho = ssvi_params(raw, t, v_scale=v_scale)
        w = ssvi_total_variance(theta, psi, rho, k)
        loss = ((torch.sqrt(w / t[..., None]) - v) ** 2).sum()
        if smooth > 0 and r_rows > 2:  # smooth in the row: identifiable, low-dimensional parameters
            a, b = raw[:, :r_rows], raw[:, r_rows + 1 : 2 * r_rows]
            loss = loss + smooth * v[0].numel() * (
                torch.diff(a, n=2, dim=1).square().sum() + torch.diff(b, dim=1).square().sum()
            )
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    out = raw.detach()
    if not bool(torch.isfinite(out).all()):
        raise ValueError("SSVI calibration of the training surfaces diverged (non-finite parameters)")
    return out.to(vols.dtype) if vols.dtype == torch.float64 else out.float()
