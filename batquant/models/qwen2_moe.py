"""Qwen2-MoE (``Qwen2MoeForCausalLM``): Qwen1.5-MoE, Qwen2-57B-A14B.

As Qwen3-MoE (q/k/v with biases), plus a shared expert that every token
passes through: its gate/up read the same input as the routed experts, so
they join the experts' ``P_up``; its down projection is a group of its own;
its sigmoid gate ``mlp.shared_expert_gate`` (one output) stays in full
precision, like the router.
"""

from batquant.models import ExpertsSite, LinearGroup, ModelAdapter, register_adapter
from batquant.models.qwen3_moe import MOE_GROUPS

QWEN2_MOE = register_adapter(ModelAdapter(
    "Qwen2MoeForCausalLM",
    groups=(*MOE_GROUPS,
            LinearGroup("shared_up", ("mlp.shared_expert.gate_proj", "mlp.shared_expert.up_proj"),
                        optional=True),
            LinearGroup("shared_down", ("mlp.shared_expert.down_proj",), optional=True)),
    experts=(ExpertsSite("mlp.experts", input_group="shared_up"),),
    full_precision=("mlp.shared_expert_gate",),
))  # fmt: skip
