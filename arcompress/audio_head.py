"""Audio head: a per-chunk linear predictor plus a discretized logistic mixture over 65 536 values.

Per stream and time step the network gives ``4K`` parameters (K components):
``logits[K], means[K], log_scales[K], couplings[K]``.  Component ``k``'s mean, in int16
sample units, is::

    mean_k = lpc[t] + MEAN_GAIN * means_k + tanh(couplings_k) * e_ref[t]

with ``lpc[t] = sum_{j=1..P} a_j s[t-j]`` a linear predictor on the exact past samples (the
network's fixed-point features are too coarse to carry a 16-bit prediction).  As in FLAC, the
encoder fits the taps ``a`` to each chunk (least squares, :func:`chunk_lpc`; from format 10 of
an order it chooses per stream, :func:`choose_lpc`) and stores them in the file as integers
within int16 (Rice-coded from format 7, tapcode.py); the network then shapes the distribution
around that prediction: where it is, how wide, how heavy-tailed.  ``e_ref[t] = r[t] - lpc_r[t]`` is the
reference channel's prediction error at the same time step (zero for the first channel):
stereo channels are coupled as PixelCNN++ couples R, G and B.  Models with ``lpc_cross`` > 0
also give the predictor of every channel after the first taps on its reference channel's
present and past samples (:class:`Predictor`; inter-channel prediction as in MPEG-4 ALS), so
that nearly identical channels cost about what their difference costs.  Scales are
``exp(log_scales_k)`` samples.

**Exact coding without a 65 536-entry table**: a sample ``v`` is coded as its high byte
``(v + 32768) >> 8`` (a 256-entry table) and then its low byte given the high byte (a table
over the 256 values of that bin, from the same integer CDF): two small tables per sample whose
product is exactly the model's integer pmf up to the rounding of each table to 2**24, so the
cost against the ideal is two table quantizations (measured in benchmarks/audio.py).
The CDF is an integer table of the logistic at 2**-7 steps, linearly interpolated in integers
(2**30 scale), so that bins far narrower than the scale keep their mass.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import fixedpoint as fp
from .head import PRECISION, freqs_from_masses, prior_weights
from .tapcode import LPC_ORDERS, SHIFT_BITS, predictor_bits, rice_bits

#: a network mean of 1.0 (real units) moves the component mean by MEAN_GAIN samples
MEAN_GAIN = 64
#: log-scale clamp, real units (natural log of samples)
LS_MIN, LS_MAX = -2.0, 11.0
#: fractional bits of means and edges in the exact head
MEAN_BITS = 8
#: fractional bits of the inverse-scale table and of t = (edge - mean) / scale; every product
#: |edge - mean| * inv < 2**25 * 2**27 stays below 2**53, so the CDF is computed in float64
#: on integer values, exactly (fast SIMD arithmetic, same bits on every machine)
INV_BITS, T_BITS = 24, 20
#: the CDF table: logistic at steps of 2**-CDF_STEP_BITS over [-CDF_RANGE, CDF_RANGE], 2**CDF_ONE_BITS scale
CDF_STEP_BITS, CDF_RANGE, CDF_ONE_BITS = 7, 32, 30
MEAN_LIMIT = 40000 << MEAN_BITS


def num_params(mixtures: int) -> int:
    return 4 * mixtures


def build_tables() -> dict[str, torch.Tensor]:
    """Integer tables of the audio head (stored in the model file, never rebuilt at decode time)."""
    one = fp.ONE
    ls = np.arange(int(LS_MIN * one), int(LS_MAX * one) + 1, dtype=np.float64) / one
    inv = np.floor(np.exp(-ls) * (1 << INV_BITS) + 0.5)
    u = np.arange(-CDF_RANGE << CDF_STEP_BITS, (CDF_RANGE << CDF_STEP_BITS) + 1) / (1 << CDF_STEP_BITS)
    cdf = np.floor((1 << CDF_ONE_BITS) / (1.0 + np.exp(-u)) + 0.5)
    return {"audio_inv_scale": torch.from_numpy(inv.astype(np.int64)),
            "audio_cdf": torch.from_numpy(cdf.astype(np.int64))}


AUDIO_TABLE_SIZES = {"audio_inv_scale": int((LS_MAX - LS_MIN) * fp.ONE) + 1,
                     "audio_cdf": (2 * CDF_RANGE << CDF_STEP_BITS) + 1}


def validate_tables(tables: dict[str, torch.Tensor]) -> None:
    for name, size in AUDIO_TABLE_SIZES.items():
        t = tables.get(name)
        if t is None or t.shape != (size,):
            raise ValueError(f"model file: lookup table {name!r} is missing or has the wrong shape")
    cdf = tables["audio_cdf"]
    if bool((cdf[1:] < cdf[:-1]).any()) or int(cdf[0]) != 0 or int(cdf[-1]) != 1 << CDF_ONE_BITS:
        raise ValueError("model file: the audio CDF table is not monotone from 0 to 2**30")
    inv = tables["audio_inv_scale"]
    if int(inv.min()) < 1 or int(inv.max()) >= 1 << 27:
        raise ValueError("model file: the audio inverse-scale table is out of range")


def split_params(p: torch.Tensor, k: int):
    """(..., 4K) -> logits, means, log_scales, couplings, each (..., K)."""
    return p[..., :k], p[..., k:2 * k], p[..., 2 * k:3 * k], p[..., 3 * k:4 * k]


# ----------------------------------------------------------------------------- float (training)

#: most fractional bits of the stored linear-predictor taps (each stream's taps are int16 with
#: their own shift, the largest <= LPC_MAX_BITS that fits, as FLAC stores its coefficients)
LPC_MAX_BITS = 15


@dataclass
class Predictor:
    """Per-stream linear predictors, chosen by the encoder and stored in the file.

    The prediction of ``s[t]`` is ``(sum_j taps[j] s[t-1-j] + sum_k cross[k] r[t-k]) / 2**shift``
    with ``r`` the stream's reference channel: ``taps`` (N, P) on the stream's own past,
    ``cross`` (N, Q) on the reference channel's present and past (inter-channel prediction, as
    in MPEG-4 ALS; Q = 0 when the model has none, all zero for streams without a reference),
    ``shift`` (N,) the fractional bits.  All int64, every tap within int16.  ``orders`` (N,)
    (format version 10 on, :func:`choose_lpc`): each stream's own order, its taps past it zero;
    None: every stream has all P taps.
    """

    taps: torch.Tensor
    cross: torch.Tensor
    shift: torch.Tensor
    orders: torch.Tensor | None = None

    @property
    def order(self) -> int:
        return self.taps.shape[1]

    def rows(self, index: torch.Tensor) -> "Predictor":
        """The predictors of the streams ``index`` selects."""
        return Predictor(self.taps[index], self.cross[index], self.shift[index],
                         None if self.orders is None else self.orders[index])

    def bits(self, has_ref: torch.Tensor) -> torch.Tensor:
        """Bits (N,) int64 of each stream's coded predictor (tapcode.py, before the byte padding);
        ``has_ref`` (N,): the streams whose cross taps are written."""
        return predictor_bits(self.taps, self.cross, has_ref, self.orders)

    def coefficients(self) -> torch.Tensor:
        """(N, P + Q) float64 in window order (see :func:`predictor_windows`)."""
        return torch.cat([self.taps, self.cross], 1).to(torch.float64)

    def _sums(self, samples: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        """The integer sums of taps times samples (N, T), float64: every product is below 2**30
        and there are at most 96 of them, so the sum is exact in any order."""
        w = predictor_windows(samples, self.order, ref, self.cross.shape[1])
        return (w * self.coefficients().unsqueeze(1)).sum(-1)

    def float_prediction(self, samples: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Float prediction (N, T) in samples (training and float NLL)."""
        return (self._sums(samples, ref) * torch.exp2(-self.shift.double()).unsqueeze(-1)).float()

    def exact_prediction(self, samples: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Integer prediction with MEAN_BITS fractional bits, (N, T) int64, zero past."""
        return fp.rescale(self._sums(samples, ref), (self.shift - MEAN_BITS).double().unsqueeze(-1)).to(torch.int64)


def predictor_windows(samples: torch.Tensor, order: int, ref: torch.Tensor | None = None,
                      cross: int = 0) -> torch.Tensor:
    """(N, T) -> (N, T, order + cross) float64: ``s[t-1], ..., s[t-order]`` then
    ``r[t], r[t-1], ..., r[t-cross+1]`` (zero before the stream starts)."""
    t = samples.shape[1]
    own = F.pad(samples.to(torch.float64), (order, 0)).unfold(1, order, 1)[:, :t].flip(-1)
    if not cross:
        return own
    if ref is None:
        raise ValueError("a predictor with cross taps needs the reference channel")
    rw = F.pad(ref.to(torch.float64), (cross - 1, 0)).unfold(1, cross, 1).flip(-1)
    return torch.cat([own, rw], -1)


#: the encoder's predictor fit: reweighting passes after the least-squares one, and the window
#: (samples) of the local error power that weights them (chosen on held-out training files)
LPC_REWEIGHT_PASSES, LPC_POWER_WINDOW = 3, 33


def chunk_lpc(samples: torch.Tensor, lengths: torch.Tensor, order: int, ref: torch.Tensor | None = None,
              has_ref: torch.Tensor | None = None, cross: int = 0,
              passes: int = LPC_REWEIGHT_PASSES, coded: bool = True) -> Predictor:
    """Per-stream linear predictor, quantized, for (N, T) samples: the encoder's choice (float
    arithmetic is fine here: the taps are stored in the file).

    Least squares weights every error by its square, so a loud attack decides the taps of a
    whole chunk and its quiet decay is predicted badly, although the coder (whose scale follows
    the local loudness) pays for the error *relative* to the local level everywhere.  So after
    the least-squares fit, ``passes`` weighted refits give each sample the weight
    ``1 / (1 + local error power)``, the power being the previous fit's squared error averaged
    over ``LPC_POWER_WINDOW`` samples: maximum likelihood for Gaussian errors whose variance
    follows that power.  Only the first ``lengths[n]`` samples of stream n are used; a tiny
    ridge keeps silence and very short streams well-posed.  With ``cross`` > 0, streams whose
    ``has_ref`` (N,) is true also get ``cross`` taps on ``ref`` (N, T), their reference
    channel's present and past.

    ``coded``: choose each stream's tap precision for Rice-coded taps (format version 7 on,
    :func:`_coded_shift`); otherwise the finest precision that fits int16 (versions 1-6, which
    store every tap in 16 bits).
    """
    n, t = samples.shape
    x = samples.to(torch.float64)
    if cross and has_ref is None:
        raise ValueError("cross taps need has_ref")
    win = predictor_windows(samples, order, ref if cross else None, cross)  # (N, T, P + Q)
    k = win.shape[-1]
    valid = (torch.arange(t).view(1, t) < lengths.view(-1, 1)).to(torch.float64)
    win = win * valid.unsqueeze(-1)
    if cross:
        win[..., order:] *= has_ref.to(torch.float64).view(n, 1, 1)
    eye = torch.eye(k, dtype=torch.float64)
    weight = valid
    for it in range(passes + 1):
        if it:
            err = (x - (win * a.unsqueeze(1)).sum(-1)) * valid
            power = F.avg_pool1d((err * err).unsqueeze(1), LPC_POWER_WINDOW, 1, LPC_POWER_WINDOW // 2,
                                 count_include_pad=False)[:, 0, :t]
            weight = valid / (power + 1.0)
        ww = win * weight.unsqueeze(-1)
        xtx = ww.transpose(1, 2) @ win  # (N, K, K)
        xty = (ww * x.unsqueeze(-1)).sum(1)  # (N, K)
        ridge = 1e-9 * xtx.diagonal(dim1=1, dim2=2).mean(-1) + 1e-3
        a = torch.linalg.solve(xtx + ridge.view(-1, 1, 1) * eye, xty)
        a = torch.nan_to_num(a, 0.0, 0.0, 0.0).clamp(-1e4, 1e4)
        if cross:
            a[~has_ref.bool(), order:] = 0.0
    big = a.abs().amax(-1).clamp_min(1e-9)
    shift = torch.floor(torch.log2(32767 / big)).clamp(0, LPC_MAX_BITS)
    shift = shift - (torch.round(big * torch.exp2(shift)) > 32767).to(torch.float64)
    shift = shift.clamp_min(0)
    if coded:
        shift = _coded_shift(a, shift, win, weight, order, has_ref, cross)
    taps = _quantize(a, shift)
    return Predictor(taps[:, :order], taps[:, order:], shift.to(torch.int64))


#: float64 elements of the predictor windows :func:`choose_lpc` fits at once (bounds its memory)
CHOOSE_BLOCK = 1 << 22


def choose_lpc(samples: torch.Tensor, lengths: torch.Tensor, ref: torch.Tensor | None = None,
               has_ref: torch.Tensor | None = None, cross: int = 0,
               orders: tuple[int, ...] = LPC_ORDERS) -> Predictor:
    """Per stream, the coded predictor (:func:`chunk_lpc`) of the order in ``orders`` with the
    smallest estimated code length (format version 10 on): its coded taps' bits plus
    ``sum_t log2(1 + p_t) / 2`` over the stream's samples, ``p_t`` the quantized predictor's
    squared error averaged over ``LPC_POWER_WINDOW`` samples (the bits of a Gaussian error of
    that power, up to a constant).  A long order pays on tonal and resonant sounds (it reaches
    a period or a slow decay), a short one on short or noisy chunks.  On music training and
    held-out files this estimate picks orders whose float NLL is within 0.1 % of the best per
    stream (README, "Audio").  Returns taps (N, largest order chosen), ``orders`` set.
    """
    n, t = samples.shape
    step = max(1, CHOOSE_BLOCK // max(1, t * (max(orders) + cross)))
    blocks = []
    for s in range(0, n, step):
        part = slice(s, s + step)
        r, h = (None, None) if ref is None else (ref[part], None if has_ref is None else has_ref[part])
        preds = [chunk_lpc(samples[part], lengths[part], o, r, h, cross) for o in orders]
        blocks.append((s, _estimated_bits(samples[part], lengths[part], r, h, preds).argmin(0), preds))
    chosen = torch.tensor(orders)[torch.cat([b[1] for b in blocks])] if n else torch.zeros(0, dtype=torch.int64)
    taps = torch.zeros(n, int(chosen.max()) if n else 1, dtype=torch.int64)
    xt, shift = torch.zeros(n, cross, dtype=torch.int64), torch.zeros(n, dtype=torch.int64)
    for s, best, preds in blocks:
        for k, pred in enumerate(preds):
            sel = (best == k).nonzero()[:, 0]
            if not len(sel):
                continue
            taps[s + sel, :orders[k]], xt[s + sel], shift[s + sel] = pred.taps[sel], pred.cross[sel], pred.shift[sel]
    return Predictor(taps, xt, shift, chosen)


def _estimated_bits(samples, lengths, ref, has_ref, preds: list[Predictor]) -> torch.Tensor:
    """:func:`choose_lpc`'s estimate of the code length (bits, (len(preds), N) float64) of N
    streams with each of ``preds``."""
    valid = (torch.arange(samples.shape[1]).view(1, -1) < lengths.view(-1, 1)).to(torch.float64)
    has_cross = torch.zeros(len(samples), dtype=torch.bool) if has_ref is None else has_ref.bool()
    costs = []
    for pred in preds:
        err = samples.to(torch.float64) - pred.exact_prediction(samples, ref).to(torch.float64) / (1 << MEAN_BITS)
        power = F.avg_pool1d((err * err * valid).unsqueeze(1), LPC_POWER_WINDOW, 1, LPC_POWER_WINDOW // 2,
                             count_include_pad=False)[:, 0]
        bits = 0.5 * (torch.log2(power + 1.0) * valid).sum(1)
        costs.append(bits + predictor_bits(pred.taps, pred.cross, has_cross).to(torch.float64))
    return torch.stack(costs)


#: coarser tap precisions (fractional bits below the finest that fits int16) the encoder weighs
#: for coded taps, and the factor on its estimate of the bits a coarser predictor costs the
#: coder (chosen on held-out training speech: README, "Audio")
TAP_DROPS, TAP_COST_GAIN = 12, 1.0


def _quantize(a: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Float taps (N, K) at ``shift`` (N,) fractional bits -> int64 taps within int16."""
    return torch.round(a * torch.exp2(shift).unsqueeze(-1)).clamp(-32767, 32767).to(torch.int64)


def _coded_shift(a, finest, win, weight, order, has_ref, cross) -> torch.Tensor:
    """Per stream, the tap precision (shift, at most ``finest``) that minimizes the Rice-coded
    taps' bits (tapcode) plus an estimate of the extra bits their coarser prediction costs: a
    prediction off by ``d`` samples where the local error power is ``p`` costs about
    ``d**2 / (2 p ln 2)`` bits (a Gaussian error), and ``weight`` is ``1 / (1 + p)``."""
    best_cost = torch.full_like(finest, math.inf)
    best = finest.clone()
    gain = TAP_COST_GAIN / (2 * math.log(2))
    refs = has_ref.bool() if (cross and has_ref is not None) else None
    for drop in range(TAP_DROPS):
        shift = (finest - drop).clamp_min(0)
        q = _quantize(a, shift)
        off = torch.bmm(win, (q * torch.exp2(-shift).unsqueeze(-1) - a).unsqueeze(-1))[..., 0]  # (N, T)
        cost = gain * (weight * off * off).sum(1) + SHIFT_BITS + rice_bits(q[:, :order])[0]
        if refs is not None:
            cost = cost + torch.where(refs, rice_bits(q[:, order:])[0], 0)
        better = cost < best_cost
        best_cost = torch.where(better, cost, best_cost)
        best = torch.where(better, shift, best)
    return best


def nll_bits(params: torch.Tensor, samples: torch.Tensor, prediction: torch.Tensor,
             ref: torch.Tensor | None = None, ref_prediction: torch.Tensor | None = None,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Float NLL in bits per sample (scalar mean over ``mask``), for training.

    params (N, 4K, T), samples / ref (N, T) int16 values, ``prediction`` / ``ref_prediction``
    (N, T) the float linear predictions of the samples and of the reference channel
    (:meth:`Predictor.float_prediction`), mask (N, T) or None.
    """
    k = params.shape[1] // 4
    logits, means, log_s, coup = split_params(params.permute(0, 2, 1), k)  # (N, T, K)
    s = samples.float()
    mean = prediction.unsqueeze(-1) + MEAN_GAIN * means
    if ref is not None:  # all-zero for streams without a reference channel: e_ref = 0
        e_ref = ref.float() - ref_prediction
        mean = mean + torch.tanh(coup) * e_ref.unsqueeze(-1)
    log_s = log_s.clamp(LS_MIN, LS_MAX)
    inv = torch.exp(-log_s)
    c = s.unsqueeze(-1) - mean
    plus, minus = inv * (c + 0.5), inv * (c - 0.5)
    lo = s.unsqueeze(-1) <= -32768
    hi = s.unsqueeze(-1) >= 32767
    log_cdf_plus = plus - F.softplus(plus)
    log_sf_minus = -F.softplus(minus)
    # log(sigmoid(plus) - sigmoid(minus)) = minus + log(expm1(plus - minus)) - softplus(plus)
    # - softplus(minus); plus - minus = inv <= exp(-LS_MIN), so expm1 cannot overflow
    inner = minus + torch.log(torch.expm1(inv)) - F.softplus(plus) - F.softplus(minus)
    lp = torch.where(lo, log_cdf_plus, torch.where(hi, log_sf_minus, inner))
    lp = torch.logsumexp(F.log_softmax(logits, -1) + lp, -1)
    if mask is None:
        return -lp.mean() / math.log(2)
    m = mask.float()
    return -(lp * m).sum() / (m.sum().clamp_min(1) * math.log(2))


# ----------------------------------------------------------------------------- exact (coding)

def exact_lpc_step(window: torch.Tensor, coefficients: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """:meth:`Predictor.exact_prediction` for one time step: ``window`` (N, P + Q) float64 past
    (and reference) samples, ``coefficients`` (N, P + Q) float64 the taps in the same order
    (:meth:`Predictor.coefficients` for :func:`predictor_windows`; any order gives the same
    bits, every sum being exact), shifts (N,)."""
    return fp.rescale((window * coefficients).sum(-1), (shift - MEAN_BITS).double()).to(torch.int64)


def residual(samples: torch.Tensor, lpc: torch.Tensor) -> torch.Tensor:
    """Prediction error in whole samples (the network's input feature): s - floor(lpc)."""
    return samples.to(torch.int64) - (lpc >> MEAN_BITS)


class ExactAudioHead:
    """Integer tables for one time step of N streams: high byte, then low byte given high byte.

    ``start(params, lpc, e_ref, verbatim)``: params (N, 4K) fixed point, lpc (N,) and e_ref (N,)
    with MEAN_BITS fractional bits, and optionally verbatim (N,) bool: the rows of streams coded
    with uniform tables (audio_modes.VERBATIM, format 11; :func:`verbatim_freqs`).  Then
    ``high_freqs()`` -> (N, 256) and ``low_freqs(high, step_bits)`` -> (N, 256), whose entries
    from ``256 >> step_bits`` on are impossible.
    """

    def __init__(self, tables: dict[str, torch.Tensor], mixtures: int):
        self.tables, self.K = tables, mixtures
        self.cdf_f = tables["audio_cdf"].to(torch.float64)
        self.inv_lo = int(LS_MIN * fp.ONE)
        self.inv_hi = int(LS_MAX * fp.ONE)

    def start(self, params: torch.Tensor, lpc: torch.Tensor, e_ref: torch.Tensor,
              verbatim: torch.Tensor | None = None) -> None:
        self.verbatim = None if verbatim is None else verbatim.view(-1, 1)
        p = params.to(torch.int64)
        logits, means, log_s, coup = split_params(p, self.K)
        self.weights = prior_weights(logits, self.tables)  # (N, K), 2**16 scale
        lo = -fp.TANH_RANGE * fp.ONE
        alpha = self.tables["tanh"][coup.clamp(lo, -lo) - lo]  # (N, K) 10 fractional bits
        mean = lpc.unsqueeze(-1) + means * (MEAN_GAIN << MEAN_BITS >> fp.ACT_BITS) \
            + ((alpha * e_ref.unsqueeze(-1)) >> fp.ACT_BITS)
        self.mean = mean.clamp(-MEAN_LIMIT, MEAN_LIMIT)
        self.mean_f = self.mean.to(torch.float64)
        ls = log_s.clamp(self.inv_lo, self.inv_hi)
        self.inv_f = self.tables["audio_inv_scale"][ls - self.inv_lo].to(torch.float64)  # 2**INV_BITS scale
        self.weights_f = self.weights.to(torch.float64)

    def _cdf(self, edges: torch.Tensor) -> torch.Tensor:
        """Component CDFs (N, K, E) at edges (N, 1, E) given with MEAN_BITS fractional bits.

        Integer arithmetic carried in float64: every intermediate is an integer below 2**53.
        """
        t = (edges.to(torch.float64) - self.mean_f.unsqueeze(-1)).mul_(self.inv_f.unsqueeze(-1))
        t.mul_(2.0 ** -(MEAN_BITS + INV_BITS - T_BITS)).floor_()  # t with T_BITS fractional bits
        lim = float(CDF_RANGE << T_BITS)
        u = t.clamp_(-lim, lim - 1).add_(lim)
        step = 2.0 ** (T_BITS - CDF_STEP_BITS)
        idx = torch.floor(u * (1.0 / step))
        frac = u.sub_(idx * step)
        i = idx.long()
        lo_v = torch.take(self.cdf_f, i)
        return frac.mul_(torch.take(self.cdf_f, i + 1) - lo_v).mul_(1.0 / step).floor_().add_(lo_v)

    def _freqs(self, cdf: torch.Tensor) -> torch.Tensor:
        """Tables (N, 256) from component CDFs (N, K, E+1) at E <= 256 bins' edges; entries past
        the E-th are impossible symbols (mass 0, frequency 1)."""
        mass = (cdf[..., 1:] - cdf[..., :-1]).clamp_min_(0)  # (N, K, E), below 2**30
        # each weight is at most 2**16 (K <= 16 of them) and each component's masses sum to 2**30:
        # the sum is exact in float64, and >> 13 keeps the total below 2**38, so that
        # freqs_from_masses never has to halve it
        mass = torch.floor((self.weights_f.unsqueeze(-1) * mass).sum(1) * 2.0 ** -13).to(torch.int64)
        return freqs_from_masses(torch.nn.functional.pad(mass, (0, 256 - mass.shape[-1])))

    def sample_bits(self, samples: torch.Tensor, step_bits: int = 0) -> torch.Tensor:
        """The mixture's code length in bits (N,) float64 of ``samples`` (N,) int16 values, each
        a bin of ``2**step_bits`` values (wasted low bits): the ideal length the two tables
        approach, without their rounding to 2**24 (the encoder's estimate for choices; the
        coder always uses the tables)."""
        q = 1 << step_bits
        s = samples.to(torch.int64)
        half = 1 << (MEAN_BITS - 1)
        edges = torch.stack([(s << MEAN_BITS) - half, ((s + q - 1) << MEAN_BITS) + half], -1)
        cdf = self._cdf(edges.unsqueeze(1))  # (N, K, 2)
        lo = torch.where((s == -32768).unsqueeze(-1), 0.0, cdf[..., 0])
        hi = torch.where((s + q - 1 >= 32767).unsqueeze(-1), float(1 << CDF_ONE_BITS), cdf[..., 1])
        mass = (self.weights_f * (hi - lo).clamp_min(0)).sum(-1)
        total = self.weights_f.sum(-1) * float(1 << CDF_ONE_BITS)
        return -torch.log2((mass / total).clamp_min(2.0 ** -(PRECISION + 8)))

    def high_freqs(self) -> torch.Tensor:
        n = self.mean.shape[0]
        edges = _HIGH_EDGES.to(self.mean.device).view(1, 1, -1)
        cdf = self._cdf(edges.expand(n, 1, -1))
        zero = torch.zeros(n, self.K, 1, dtype=torch.float64, device=cdf.device)
        return self._uniform_where_verbatim(self._freqs(torch.cat([zero, cdf, zero + (1 << CDF_ONE_BITS)], -1)), 0)

    def low_freqs(self, high: torch.Tensor, step_bits: int = 0) -> torch.Tensor:
        """Tables (N, 256) over the 256 >> step_bits values of the high-byte bin ``high`` (N,):
        symbol ``l`` stands for the sample ``base + l * 2**step_bits``."""
        q = 1 << step_bits
        m = torch.arange(0, 257, q, device=high.device, dtype=torch.int64)  # 256/q + 1 edges
        base = (high.to(torch.int64) << 8) - 32768
        edges = (((base.unsqueeze(-1) + m) << MEAN_BITS) - (1 << (MEAN_BITS - 1))).unsqueeze(1)
        cdf = self._cdf(edges)
        one = float(1 << CDF_ONE_BITS)
        cdf[:, :, 0] = torch.where(high.view(-1, 1) == 0, 0.0, cdf[:, :, 0])
        cdf[:, :, -1] = torch.where(high.view(-1, 1) == 255, one, cdf[:, :, -1])
        return self._uniform_where_verbatim(self._freqs(cdf), step_bits)

    def _uniform_where_verbatim(self, freqs: torch.Tensor, step_bits: int) -> torch.Tensor:
        """``freqs`` (N, 256) with the verbatim rows' tables replaced by verbatim_freqs(step_bits)."""
        if self.verbatim is None:
            return freqs
        return torch.where(self.verbatim, verbatim_freqs(step_bits).to(freqs.device), freqs)


@functools.lru_cache(maxsize=None)
def verbatim_freqs(step_bits: int = 0) -> torch.Tensor:
    """(1, 256): equal frequencies on the first ``256 >> step_bits`` symbols (``8 - step_bits``
    bits each), the rest impossible (frequency 1), as ExactAudioHead.low_freqs lays them out.
    With step_bits 0 it is a verbatim stream's high-byte table and a 24-bit sample's low byte's."""
    mass = torch.zeros(1, 256, dtype=torch.int64)
    mass[:, :256 >> step_bits] = 1
    return freqs_from_masses(mass)


#: (1, 256) a byte coded with 8 bits: a 24-bit sample's low byte
BYTE_FREQS = verbatim_freqs(0)


_HIGH_EDGES = ((torch.arange(1, 256, dtype=torch.int64) * 256 - 32768) << MEAN_BITS) - (1 << (MEAN_BITS - 1))
