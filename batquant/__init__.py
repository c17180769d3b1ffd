"""batquant: BATQuant calibration for MX formats, built on mxref."""
