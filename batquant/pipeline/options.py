"""The choices of a whole-model run, as policies with clear errors."""

from mxref.policies import Policy


class Objective(Policy):
    """What each decoder layer's parameters are trained on."""

    #: The MSE of the decoder layer's output (the BATQuant paper's eq. 5).
    LAYER = "layer"
    #: The sum of every linear's output MSE on full-precision inputs (Algorithm 2).
    LINEAR = "linear"


class Propagation(Policy):
    """What the next decoder layer is calibrated on."""

    #: The full-precision layer's outputs (FlatQuant's choice).
    FULL_PRECISION = "full_precision"
    #: The quantized layer's outputs.
    QUANTIZED = "quantized"
