"""Synthetic activations and weights with the structure of real LLM tensors.

Real LLM activations (LLM.int8(), SmoothQuant, "Massive activations in
LLMs") have a few channels far larger than the rest, channel scales spread
over orders of magnitude, occasional tokens that are much larger everywhere,
and heavier-than-Gaussian tails.  :func:`llm_like_activations` builds all
four from a seed, so quality benchmarks and tests run without downloads.
"""

from __future__ import annotations

import torch


def _check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def _student_t(shape: tuple[int, int], df: int, gen: torch.Generator) -> torch.Tensor:
    """Student-t(df) draws: a normal over the root of a chi-square(df) / df.

    The chi-square is a sum of ``df`` squared normals from the same generator,
    so nothing touches torch's global random state.
    """
    _check_positive("tail_df", df)
    chi2 = torch.zeros(shape, dtype=torch.float64)
    for _ in range(df):
        chi2.add_(torch.randn(shape, generator=gen, dtype=torch.float64).square_())
    normal = torch.randn(shape, generator=gen, dtype=torch.float64)
    return normal / torch.sqrt(chi2 / df)


def llm_like_activations(
    tokens: int,
    features: int,
    *,
    seed: int = 0,
    massive_channels: int = 4,
    massive_ratio: tuple[float, float] = (100.0, 1000.0),
    channel_sigma: float = 1.0,
    spike_fraction: float = 0.01,
    spike_ratio: tuple[float, float] = (10.0, 50.0),
    tail_df: int = 4,
) -> torch.Tensor:
    """Return float32 ``[tokens, features]`` activations with LLM-like outliers.

    Parameters
    ----------
    tokens, features : int
    seed : int
        Channel structure and values are fixed by it.
    massive_channels : int
        How many channels have a scale ``massive_ratio`` times the median
        channel scale (log-uniform in the range).
    massive_ratio : (float, float)
    channel_sigma : float
        Channel scales are log-normal: ``exp(N(0, channel_sigma))``.
    spike_fraction : float
        Fraction of tokens multiplied by a factor in ``spike_ratio`` (log-uniform).
    spike_ratio : (float, float)
    tail_df : int
        Values are Student-t with this many degrees of freedom (heavy tails).
    """
    _check_positive("tokens", tokens)
    _check_positive("features", features)
    gen = torch.Generator().manual_seed(seed)
    scale = torch.exp(channel_sigma * torch.randn(features, generator=gen, dtype=torch.float64))
    median = scale.median()
    count = min(massive_channels, features)
    massive = torch.randperm(features, generator=gen)[:count]
    lo, hi = (torch.log(torch.tensor(r, dtype=torch.float64)) for r in massive_ratio)
    ratios = torch.exp(lo + (hi - lo) * torch.rand(count, generator=gen, dtype=torch.float64))
    scale[massive] = median * ratios
    t = _student_t((tokens, features), tail_df, gen)
    x = t * scale
    spikes = torch.rand(tokens, generator=gen) < spike_fraction
    slo, shi = (torch.log(torch.tensor(r, dtype=torch.float64)) for r in spike_ratio)
    factor = torch.exp(slo + (shi - slo) * torch.rand(tokens, generator=gen, dtype=torch.float64))
    x[spikes] *= factor[spikes, None]
    return x.to(torch.float32)


def llm_like_weight(out_features: int, in_features: int, *, seed: int = 0) -> torch.Tensor:
    """Return a float32 ``[out, in]`` weight: Student-t(6) entries, log-normal column scales.

    The entries have standard deviation about ``1/sqrt(in_features)``, as an
    initialised-then-trained linear layer does; column (input channel)
    scales vary by ``exp(N(0, 0.3))``.
    """
    _check_positive("out_features", out_features)
    _check_positive("in_features", in_features)
    gen = torch.Generator().manual_seed(seed)
    t = _student_t((out_features, in_features), 6, gen) / (6 / 4) ** 0.5
    cols = torch.exp(0.3 * torch.randn(in_features, generator=gen, dtype=torch.float64))
    return (t * cols / in_features**0.5).to(torch.float32)
