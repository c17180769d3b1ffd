"""Transforms ``P`` applied before MX quantization, as ``nn.Module`` objects with one interface.

Every transform is an :class:`Transform` of one ``size`` N: ``forward(x)`` is
``x @ P`` over the last dim, ``weight_transform(W)`` is ``W @ P^{-T}`` (so
``forward(x) @ weight_transform(W).T == x @ W.T``), ``materialize()`` the
dense ``P``, ``inverse()`` a new transform with ``P^{-1}``; ``num_params`` and
``learnable`` say what calibration can train.

=====================  ====================================  ==================
class                  ``P``                                 method
=====================  ====================================  ==================
:class:`GPK`           ``diag(kron(B_i^T, A))``, A shared    BATQuant
:class:`NaiveKronecker`  ``diag(kron(B_i^T, A_i))``          ablation
:class:`BlockAffine`   ``diag(P_1, ..., P_k)``, free blocks  ablation
:class:`GlobalKronecker`  ``kron(L, R)`` over N              FlatQuant
:class:`BlockHadamard`  ``diag(H_g) / sqrt(g)``              BRQ
:class:`GlobalHadamard`  ``D H_N / sqrt(N)``                 QuaRot
:class:`SmoothScale`   ``diag(1 / s)``                       SmoothQuant
:class:`ComposedTransform`  ``P_1 P_2 ...``                  FlatQuant (diag x kron)
:class:`SchurHornBalance`  ``Q_p`` across blocks per position  TORQ (macro)
:class:`MaxEntropyBlockRotation`  ``I kron R``, R fitted       TORQ (micro)
=====================  ====================================  ==================

Inverses are computed in float64, and every inverted factor passes a
condition-number guard (:mod:`batquant.algorithms.transforms.base`).
"""

from batquant.algorithms.transforms.base import DEFAULT_MAX_CONDITION, Transform, TransformInit
from batquant.algorithms.transforms.block import GPK, BlockAffine, NaiveKronecker
from batquant.algorithms.transforms.composed import ComposedTransform
from batquant.algorithms.transforms.hadamard import BlockHadamard, GlobalHadamard
from batquant.algorithms.transforms.kronecker import GlobalKronecker
from batquant.algorithms.transforms.matrices import hadamard_matrix
from batquant.algorithms.transforms.rotations import MaxEntropyBlockRotation, SchurHornBalance
from batquant.algorithms.transforms.smooth import SmoothScale

__all__ = [
    "DEFAULT_MAX_CONDITION",
    "GPK",
    "BlockAffine",
    "BlockHadamard",
    "ComposedTransform",
    "GlobalHadamard",
    "GlobalKronecker",
    "MaxEntropyBlockRotation",
    "NaiveKronecker",
    "SchurHornBalance",
    "SmoothScale",
    "Transform",
    "TransformInit",
    "hadamard_matrix",
]
