"""Leave batquant: a deployable packed export, its loader, and one-layer dumps for devices.

- :func:`export` / :func:`load_export`: packed MX weights in compressed-tensors'
  layout with the online parts beside them and a MANIFEST; loaded back from
  the folder alone, bit-identically (:mod:`batquant.deploy.writing`,
  :mod:`batquant.deploy.loading`).
- :func:`dump_layer`: one linear's MX activation, MX weight and reference
  outputs as mxref files, for checking an accelerator layer by layer
  (:mod:`batquant.deploy.layer_dump`).

docs/export.md walks through both.
"""

from batquant.deploy.layer_dump import dump_layer
from batquant.deploy.loading import load_export
from batquant.deploy.writing import ExportSummary, export

__all__ = ["ExportSummary", "dump_layer", "export", "load_export"]
