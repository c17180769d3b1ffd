"""Per-head transforms and the KV-cache quantizer (BATQuant paper, section 3.2.2).

- :class:`HeadTransforms`: one :class:`~batquant.algorithms.transforms.Transform` over
  head_dim per KV head, applied to ``[batch, heads, seq, head_dim]`` states,
  and fused into weights: into v_proj's output rows (``P_v``) and o_proj's
  input columns (``P_v^{-1}``, per query head through its KV head: GQA).
- :class:`KVQuantizer`: what runs online inside attention, after RoPE: keys
  become ``k P_k`` and queries ``q P_k^{-T}`` (so ``q k^T`` is unchanged), then
  K and V are fake-quantized in MX blocks along head_dim.  The scores, the
  softmax and RoPE stay in full precision.

Quantizing K and V at every attention call is the same as storing quantized
entries in the cache: each token's key and value are quantized on their own,
block by block along head_dim, so quantizing the cached entries again gives
the same bits.
"""

from __future__ import annotations

import torch
from torch import nn

from batquant.algorithms.transforms import Transform
from batquant.config import TensorQuant
from mxref.policies import Policy


class HeadTransforms(nn.Module):
    """One transform over head_dim per KV head.

    Parameters
    ----------
    transforms : sequence of Transform
        ``num_kv_heads`` transforms, each of size head_dim.
    num_heads : int
        Query heads; query head ``j`` uses KV head ``j // (num_heads // num_kv_heads)``.
    """

    def __init__(self, transforms: list[Transform], num_heads: int) -> None:
        super().__init__()
        if not transforms:
            raise ValueError("HeadTransforms needs one transform per KV head; got none")
        self.transforms = nn.ModuleList(transforms)
        self.num_kv_heads = len(transforms)
        self.head_dim = transforms[0].size
        if num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads {num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}"
            )
        self.num_heads = num_heads
        self.group = num_heads // self.num_kv_heads

    def _each(self) -> list[Transform]:
        return [t for t in self.transforms if isinstance(t, Transform)]

    @property
    def dtype(self) -> torch.dtype:
        """The transforms' dtype."""
        return self._each()[0].dtype

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """``s_g P_g`` for KV states ``[batch, num_kv_heads, seq, head_dim]``."""
        heads = [t(states[:, g]) for g, t in enumerate(self._each())]
        return torch.stack(heads, dim=1)

    def inverse_transpose(self, queries: torch.Tensor) -> torch.Tensor:
        """``q_j P_{g(j)}^{-T}`` for queries ``[batch, num_heads, seq, head_dim]``."""
        b, h, s, d = queries.shape
        grouped = queries.view(b, self.num_kv_heads, self.group, s, d)
        heads = [t.weight_transform(grouped[:, g]) for g, t in enumerate(self._each())]
        return torch.stack(heads, dim=1).view(b, h, s, d)

    def rows_of(self, features: torch.Tensor) -> torch.Tensor:
        """v_proj's outputs ``[..., num_kv_heads * head_dim]`` in the ``P_v`` basis."""
        d = self.head_dim
        return torch.cat([t(features[..., g * d : (g + 1) * d])
                          for g, t in enumerate(self._each())], dim=-1)  # fmt: skip

    def columns_of(self, features: torch.Tensor) -> torch.Tensor:
        """o_proj's inputs ``[..., num_heads * head_dim]`` in each query head's ``P_v`` basis."""
        d, each = self.head_dim, self._each()
        return torch.cat([each[j // self.group](features[..., j * d : (j + 1) * d])
                          for j in range(self.num_heads)], dim=-1)  # fmt: skip

    def fuse_rows(
        self, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``P_g`` fused into the output rows of each KV head: ``P_g^T W_g`` and ``b_g P_g``."""
        d = self.head_dim
        rows = [t(weight[g * d : (g + 1) * d].T).T for g, t in enumerate(self._each())]
        w = torch.cat(rows)
        if bias is None:
            return w, None
        return w, torch.cat([t(bias[g * d : (g + 1) * d]) for g, t in enumerate(self._each())])

    def fuse_columns(self, weight: torch.Tensor) -> torch.Tensor:
        """o_proj with ``P_{g(j)}^{-T}`` fused into the input columns of each query head ``j``."""
        d, each = self.head_dim, self._each()
        cols = [each[j // self.group].weight_transform(weight[:, j * d : (j + 1) * d])
                for j in range(self.num_heads)]  # fmt: skip
        return torch.cat(cols, dim=1)

    def extra_repr(self) -> str:
        return f"num_kv_heads={self.num_kv_heads}, num_heads={self.num_heads}"


class FusedSide(Policy):
    """Which side of a linear's weight a per-head transform is fused into."""

    #: v_proj: the output rows of each KV head (``P_g^T W_g``, ``b_g P_g``)
    ROWS = "rows"
    #: o_proj: the input columns of each query head (``W_j P_{g(j)}^{-T}``)
    COLUMNS = "columns"


class HeadFusion(nn.Module):
    """``P_v`` as one linear sees it: the one place that knows how it is wired.

    v_proj fuses ``P_v`` into its output rows; o_proj fuses ``P_v^{-1}`` into
    its input columns, so that attention's output (a mix of values) comes
    back to the original basis.  Both linears hold the same
    :class:`HeadTransforms` (registered in each; the layer saves it once).

    Parameters
    ----------
    heads : HeadTransforms
    side : FusedSide or str
    """

    def __init__(self, heads: HeadTransforms, side: FusedSide | str) -> None:
        super().__init__()
        self.heads = heads
        self.side = FusedSide.parse(side, "side")

    def fuse(self, weight: torch.Tensor, bias: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """The weight and bias with the transform fused in (differentiable)."""
        if self.side is FusedSide.ROWS:
            return self.heads.fuse_rows(weight, bias)
        return self.heads.fuse_columns(weight), bias

    def reference(self, inputs: torch.Tensor, outputs: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """The unfused linear's inputs and outputs, moved into the fused linear's basis."""
        if self.side is FusedSide.ROWS:
            return inputs, self.heads.rows_of(outputs)
        return self.heads.columns_of(inputs), outputs

    def extra_repr(self) -> str:
        return f"side={self.side.value}"


class KVQuantizer(nn.Module):
    """The online part of KV-cache quantization, called from attention after RoPE.

    Parameters
    ----------
    key, value : TensorQuant or None
        MX fake quantization of K and V along head_dim (None: full precision).
    key_heads : HeadTransforms or None
        ``P_k`` (also registered in the layer's ``batquant`` dict; the layer
        saves it once); ``P_v`` is fused into the weights and not held here.
    """

    def __init__(
        self,
        key: TensorQuant | None,
        value: TensorQuant | None,
        key_heads: HeadTransforms | None,
    ) -> None:
        super().__init__()
        self.key = key
        self.value = value
        self.key_heads = key_heads
        #: False: skip the fake quantization (the transform stays).
        self.quantize = True

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Transformed queries and keys, and quantized keys and values, in their own dtypes."""
        if self.key_heads is not None:
            dtype = self.key_heads.dtype
            query = self.key_heads.inverse_transpose(query.to(dtype)).to(query.dtype)
            key = self.key_heads(key.to(dtype)).to(key.dtype)
        if self.quantize:
            if self.key is not None:
                key = self.key.fake_quantize(key)
            if self.value is not None:
                value = self.value.fake_quantize(value)
        return query, key, value

    def extra_repr(self) -> str:
        k = self.key.describe() if self.key else "fp"
        v = self.value.describe() if self.value else "fp"
        return f"key={k}, value={v}, quantize={self.quantize}"
