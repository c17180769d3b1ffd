"""Example simulator for ``mxref conform --command``: the exchange protocol, done with mxref.

::

    python examples/sim_quantize.py --in IN.npz --out OUT.npz [--no-packed]
    mxref conform --command 'python examples/sim_quantize.py --in {in} --out {out}'

A hardware team replaces the call to :func:`mxref.quantize` below with its
simulator (or a wrapper that converts these arrays to and from the
simulator's own files).  The protocol, ``mxref-conform-1``:

``IN`` (written by ``mxref conform``), an ``.npz`` with
    ``x``     float32 ``(blocks, block_size)``, one block per row;
    ``meta``  a 0-d string array holding JSON: ``protocol``, ``format``,
              ``scale_rule``, ``rounding``, ``overflow``, ``block_size`` and,
              for stochastic rounding only, ``seed``.

``OUT`` (written by the simulator), an ``.npz`` with
    ``codes``   uint8 ``(blocks, block_size)``: one element code per byte;
    ``scales``  uint8 ``(blocks,)``: the E8M0 scale byte of each row;
    ``packed``  optional uint8 ``(blocks, bytes_per_row)``: each row's codes
                packed as the hardware stores them (checked against
                mxref.pack's layout: FP4 element 2j in the low nibble).

Exit with status 0 on success; any other status is reported as a failure
of every case in that run, with the last lines of stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import mxref

PROTOCOL = "mxref-conform-1"


def simulate(x: np.ndarray, meta: dict) -> dict[str, np.ndarray]:
    """Quantize the rows of ``x`` as ``meta`` says; return the OUT arrays.

    Parameters
    ----------
    x : np.ndarray
        float32, (blocks, block_size).
    meta : dict
        The protocol's meta object.

    Returns
    -------
    dict of str to np.ndarray
        ``codes``, ``scales`` and ``packed``.

    Spec: OCP MX v1.0 section 6.3 (through mxref.quantize).
    """
    mx = mxref.quantize(
        x,
        meta["format"],
        axis=-1,
        block_size=int(meta["block_size"]),
        scale_rule=meta["scale_rule"],
        rounding=meta["rounding"],
        overflow=meta["overflow"],
        seed=meta.get("seed"),
    )
    return {
        "codes": mx.codes,
        "scales": mx.scales.reshape(-1),
        "packed": mxref.pack(mx).data,
    }


def main(argv: list[str] | None = None) -> int:
    """Read IN, simulate, write OUT; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="inp", required=True, help="input .npz from mxref conform")
    parser.add_argument("--out", required=True, help="output .npz to write")
    parser.add_argument("--no-packed", action="store_true", help="leave out the packed array")
    args = parser.parse_args(argv)
    with np.load(args.inp, allow_pickle=False) as z:
        x = z["x"]
        meta = json.loads(z["meta"].item())
    if meta.get("protocol") != PROTOCOL:
        print(f"unsupported protocol {meta.get('protocol')!r}", file=sys.stderr)
        return 3
    out = simulate(x, meta)
    if args.no_packed:
        del out["packed"]
    with open(args.out, "wb") as f:  # a file object: np.savez would append .npz to a name
        np.savez(f, **out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
