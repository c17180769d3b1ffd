"""A product of transforms: ``P = P_1 P_2 ... P_n``."""

from __future__ import annotations

import functools

from torch import Tensor, nn

from batquant.algorithms.transforms.base import Transform

__all__ = ["ComposedTransform"]


class ComposedTransform(Transform):
    """``P = P_1 P_2 ... P_n``: the transforms applied in order.

    ``forward(x) = x P_1 P_2 ...`` applies them in order, and so does the weight
    side, because ``W (P_1 P_2)^{-T} = W P_1^{-T} P_2^{-T}``.  The inverse is
    ``P_n^{-1} ... P_1^{-1}``; ``num_params`` is the sum.  FlatQuant's transform
    is ``ComposedTransform(SmoothScale(...), GlobalKronecker(...))``.

    Parameters
    ----------
    *transforms : Transform
        At least one, all of the same ``size``.

    Attributes
    ----------
    transforms : nn.ModuleList
    """

    def __init__(self, *transforms: Transform) -> None:
        if not transforms:
            raise ValueError("transforms: ComposedTransform needs at least one transform")
        for i, t in enumerate(transforms):
            if not isinstance(t, Transform):
                raise TypeError(f"transforms[{i}] must be a Transform; got {type(t).__name__}")
        sizes = [t.size for t in transforms]
        if len(set(sizes)) != 1:
            raise ValueError(f"transforms must all have the same size; got sizes {sizes}")
        super().__init__(sizes[0])
        self.transforms = nn.ModuleList(transforms)

    @property
    def parts(self) -> list[Transform]:
        """The transforms, in the order they are applied."""
        return [t for t in self.transforms if isinstance(t, Transform)]

    def forward(self, x: Tensor) -> Tensor:
        """``x @ P_1 @ P_2 ...``; each transform checks its input."""
        for t in self.parts:
            x = t(x)
        return x

    def weight_transform(self, weight: Tensor) -> Tensor:
        """``W @ P_1^{-T} @ P_2^{-T} ...``."""
        for t in self.parts:
            weight = t.weight_transform(weight)
        return weight

    def materialize(self) -> Tensor:
        """The dense product ``P_1 @ P_2 @ ...``, ``[N, N]``."""
        return functools.reduce(lambda p, q: p @ q, (t.materialize() for t in self.parts))

    def inverse(self) -> ComposedTransform:
        """``ComposedTransform(P_n^{-1}, ..., P_1^{-1})``."""
        return ComposedTransform(*(t.inverse() for t in reversed(self.parts)))

    def extra_repr(self) -> str:
        return f"size={self.size}, num_params={self.num_params}"
