"""``mxref encode``: quantize a tensor file to MX codes and scales."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from mxref.arguments import first_nonfinite
from mxref.array import MXArray
from mxref.cli.help import ExamplesFormatter, examples
from mxref.cli.presets import check_preset_alone
from mxref.codec import quantize
from mxref.formats import (
    DEFAULT_BLOCK_SIZE,
    SCALE_NAN,
    ElementFormat,
    get_format,
    mx_format_names,
)
from mxref.io import (
    DTYPES,
    InputError,
    _fmt_shape,
    check_new,
    parse_dtype,
    parse_shape,
    read_tensor,
)
from mxref.mx_files import SCALE_LAYOUTS, packed_paths, read_mx, recorded_scale_rule, write_mx
from mxref.nv_files import parse_tensor_scale_option
from mxref.policies import Overflow, Rounding, ScaleRule
from mxref.presets import get_nvfp4_preset, get_preset, preset_names


def _choices(enum: type[ScaleRule] | type[Rounding] | type[Overflow]) -> str:
    return "{" + ",".join(m.value for m in enum) + "}"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the subcommand to ``sub`` (the ``mxref`` subparsers); return its parser."""
    enc = sub.add_parser(
        "encode",
        help="quantize a tensor to MX (or NVFP4) codes and scales",
        description="Quantize IN (.npy, .safetensors or raw .bin) and write OUT: "
        ".npz, or packed .bin (with NAME.scales.bin and a NAME.json sidecar).  NVFP4 "
        "(--format nvfp4) also writes its float32 tensor scale.",
        formatter_class=ExamplesFormatter,
        epilog=examples(
            "mxref encode --format mxfp4 x.npy x.npz",
            "mxref encode --format mxfp8_e4m3 --scale-rule rceil --dtype bfloat16 "
            "--shape 128,4096 dump.bin out.bin",
            "mxref encode --format mxfp4 --rounding stochastic --seed 7 --axis 0 w.npy w.npz",
            "mxref encode --format mxfp8_e4m3 --preset cublas x.npy x_cublas.npz",
            "mxref encode --format mxfp4 --preset compressed-tensors w.npy w_ct.npz",
            "mxref encode --format mxfp4 --scales w_gptq.npz w_dequantized.npy w_again.npz",
            "mxref encode --format nvfp4 x.npy x_nv.npz",
            "mxref encode --format nvfp4 --per-row --scale-layout nvidia_blocked w.npy w_nv.bin",
            "mxref encode --format nvfp4 --tensor-scale 0x44D80000 x.npy x_static.npz",
            "mxref encode --format nvfp4 --preset torchao x.npy x_torchao.npz",
        ),
    )
    enc.add_argument(
        "--format", required=True, metavar="{" + ",".join([*mx_format_names(), "nvfp4"]) + "}",
        help="element format",
    )
    enc.add_argument(
        "--scale-rule",
        metavar=_choices(ScaleRule),
        help="how the shared exponent is chosen (default: floor, the spec's)",
    )
    enc.add_argument(
        "--rounding",
        metavar=_choices(Rounding),
        help="element rounding (default: rne, the spec's)",
    )
    enc.add_argument(
        "--overflow",
        metavar=_choices(Overflow),
        help="what values above max normal become (default: saturate, the spec's)",
    )
    enc.add_argument(
        "--preset",
        metavar="{" + ",".join(preset_names()) + "}",
        help="reproduce that implementation's conversion (fixes the three policies); "
        "compressed-tensors has mxfp4 and mxfp6_e2m3 only",
    )
    enc.add_argument(
        "--scales",
        metavar="FILE",
        help="encode against the E8M0 scales of this MX file (.npz, or packed .bin or its "
        ".json) instead of choosing them; its format, shape, axis and block size must match "
        "(no --scale-rule then)",
    )
    enc.add_argument("--seed", type=int, help="seed for --rounding stochastic (required there)")
    enc.add_argument("--axis", type=int, default=-1, help="axis cut into blocks (default: -1)")
    enc.add_argument(
        "--block-size",
        type=int,
        help=f"elements per block (default: {DEFAULT_BLOCK_SIZE}; 16 for nvfp4)",
    )
    enc.add_argument(
        "--per-row", action="store_true",
        help="nvfp4: one tensor scale per row along the blocked axis, from that row's amax",
    )  # fmt: skip
    enc.add_argument(
        "--tensor-scale", metavar="G",
        help="nvfp4: encode under this float32 tensor scale instead of computing it: a "
        "number, float32 bits (0x...), a comma list (one per row), or a .npy/.bin file",
    )  # fmt: skip
    enc.add_argument(
        "--dtype",
        metavar="{" + ",".join(DTYPES) + "}",
        help="element type of a raw .bin IN (little-endian)",
    )
    enc.add_argument("--shape", help="shape of a raw .bin IN, e.g. 4,64")
    enc.add_argument("--tensor", metavar="NAME", help="which tensor of a .safetensors IN")
    enc.add_argument(
        "--scale-layout",
        metavar="{" + ",".join(SCALE_LAYOUTS) + "}",
        help="scale byte layout of a packed .bin OUT (default: plain)",
    )
    enc.add_argument("--force", action="store_true", help="replace existing output files")
    enc.add_argument("input", metavar="IN")
    enc.add_argument("output", metavar="OUT")
    enc.set_defaults(func=run)
    return enc


def run(args: argparse.Namespace) -> int:
    """Run ``mxref encode``: read IN, quantize, write OUT.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by :func:`add_parser`'s parser.

    Returns
    -------
    int
        0 on success.
    """
    # Check every argument before reading the input, which may be large.
    fmt = get_format(args.format, two_level=True)
    check_preset_alone(args)
    if fmt.two_level:
        return _run_two_level(args, fmt)
    for option, value in (("--per-row", args.per_row or None), ("--tensor-scale",
                                                                 args.tensor_scale)):
        if value is not None:
            raise InputError(f"{option} applies to nvfp4 only; {fmt.name} has no tensor scale")
    block_size = _block_size(args, fmt)
    if args.scales is not None and args.scale_rule is not None:
        raise InputError("--scale-rule has no effect with --scales; drop one")
    try:
        preset = get_preset(args.preset if args.preset is not None else "ocp", fmt)
    except ValueError as e:  # the wrong family or format: one line, naming the option
        raise InputError(f"--{e}") from None
    rule = ScaleRule.parse(args.scale_rule or preset.scale_rule, "--scale-rule")
    rounding = Rounding.parse(args.rounding or preset.rounding, "--rounding")
    overflow = Overflow.parse(args.overflow or preset.overflow, "--overflow")
    # quantize checks these too, but words its errors for the Python API
    if rounding is Rounding.STOCHASTIC and args.seed is None:
        raise InputError("--rounding stochastic needs --seed N, so that results reproduce")
    if rounding is not Rounding.STOCHASTIC and args.seed is not None:
        raise InputError("--seed is only used with --rounding stochastic")
    dtype = None if args.dtype is None else parse_dtype(args.dtype)
    shape = None if args.shape is None else parse_shape(args.shape)
    _check_output(args)
    given = None if args.scales is None else _read_scales(args.scales, fmt)

    x = read_tensor(args.input, dtype=dtype, shape=shape, tensor=args.tensor)
    if given is not None:
        _check_scales_fit(args, given, x, block_size)
        # OUT records the rule that chose the scales, as far as FILE says
        rule = recorded_scale_rule(args.scales) or rule
    _warn_short_blocks(x.shape, args.axis, block_size)
    # a preset may carry more than its three policies (torchao's divisor clamp);
    # given scales leave a scale rule nothing to choose
    policies = (
        {"preset": preset}
        if args.preset is not None
        else {
            "scale_rule": rule if given is None else None,
            "rounding": rounding,
            "overflow": overflow,
        }
    )
    mx = quantize(
        x, fmt, axis=args.axis, block_size=block_size, seed=args.seed,
        scales=None if given is None else given.scales, **policies,
    )  # fmt: skip
    write_mx(
        args.output,
        mx,
        scale_layout=args.scale_layout,
        scale_rule=rule,
        rounding=rounding,
        overflow=overflow,
        seed=args.seed,
        force=args.force,
    )
    return 0


def _run_two_level(args: argparse.Namespace, fmt: ElementFormat) -> int:
    """``mxref encode --format nvfp4``: E2M1 codes, E4M3 block-scale bytes and the
    float32 tensor scale (docs/semantics.md 8c), written as for MX."""
    why = {"--scale-rule": "its E4M3 block scales round to nearest even",
           "--overflow": "its elements and block scales saturate",
           "--scales": "give its tensor scale with --tensor-scale; block scales follow from it",
           "--seed": "it has no stochastic rounding"}  # fmt: skip
    for option, value in (("--scale-rule", args.scale_rule), ("--overflow", args.overflow),
                          ("--scales", args.scales), ("--seed", args.seed)):  # fmt: skip
        if value is not None:
            raise InputError(f"{option} does not apply to {fmt.name}: {why[option]} "
                             "(mxref info nvfp4)")  # fmt: skip
    if args.preset is not None:
        try:
            get_nvfp4_preset(args.preset, fmt)
        except ValueError as e:  # an MX preset, or an unknown name: one line
            raise InputError(f"--{e}") from None
    rounding = Rounding.parse(args.rounding or "rne", "--rounding")
    if rounding is Rounding.STOCHASTIC:
        raise InputError(f"--rounding stochastic: {fmt.name} takes rne, away or zero")
    block_size = _block_size(args, fmt)
    dtype = None if args.dtype is None else parse_dtype(args.dtype)
    shape = None if args.shape is None else parse_shape(args.shape)
    _check_output(args)

    x = read_tensor(args.input, dtype=dtype, shape=shape, tensor=args.tensor)
    if not -x.ndim <= args.axis < max(x.ndim, 1):
        raise InputError(f"--axis {args.axis} is out of range for shape {_fmt_shape(x.shape)}")
    axis = args.axis % x.ndim
    given = None if args.tensor_scale is None else \
        parse_tensor_scale_option(args.tensor_scale, x.shape, axis)  # fmt: skip
    _warn_short_blocks(x.shape, args.axis, block_size)
    options = {"preset": args.preset} if args.preset is not None else {"rounding": rounding}
    try:
        mx = quantize(x, fmt, axis=args.axis, block_size=block_size, per_row=args.per_row,
                      tensor_scale=given, **options)  # fmt: skip
    except ValueError as e:  # e.g. a preset refusing what its library cannot encode
        raise InputError(" ".join(str(e).split())) from None
    write_mx(args.output, mx, scale_layout=args.scale_layout, rounding=rounding, force=args.force)
    return 0


def _block_size(args: argparse.Namespace, fmt: ElementFormat) -> int:
    """``--block-size``, or the format's own block (32 for MX, 16 for nvfp4)."""
    block_size = fmt.block_size if args.block_size is None else args.block_size
    if block_size < 1:
        raise InputError(f"--block-size must be >= 1; got {block_size}")
    return block_size


def _check_output(args: argparse.Namespace) -> None:
    """OUT: a new ``.npz``, or a new packed ``.bin`` (unless ``--force``)."""
    out = args.output
    suffix = out.rsplit(".", 1)[-1].lower() if "." in out else ""
    if suffix == "npz":
        if args.scale_layout is not None:
            raise InputError("--scale-layout applies only to packed .bin output")
        check_new([out], force=args.force, option="--force")
    elif suffix == "bin":
        check_new(packed_paths(out), force=args.force, option="--force")
    else:
        raise InputError(f"{out}: OUT must end in .npz or .bin (packed)")


def _read_scales(path: str, fmt: ElementFormat) -> MXArray:
    """The MX file ``path`` whose scales ``--scales`` gives, once its format and scales fit."""
    given = read_mx(path)
    if given.fmt != fmt:
        raise InputError(f"{path}: field 'format' is {given.fmt.name}, but --format is {fmt.name}")
    nan = np.argwhere(given.scales == SCALE_NAN)
    if len(nan):
        block = tuple(int(i) for i in nan[0])
        raise InputError(f"{path}: its scales hold 0xFF (the NaN scale) at block {block}; "
                         "--scales must be finite")  # fmt: skip
    return given


def _check_scales_fit(args: argparse.Namespace, given: MXArray, x: np.ndarray,
                      block_size: int) -> None:  # fmt: skip
    """Refuse ``--scales`` whose shape, axis or block size is not IN's, and a non-finite IN."""
    path = args.scales
    if given.shape != x.shape:
        raise InputError(f"{path}: field 'shape' is {_fmt_shape(given.shape)}, but IN has "
                         f"shape {_fmt_shape(x.shape)}")  # fmt: skip
    if -x.ndim <= args.axis < x.ndim and args.axis % x.ndim != given.axis:
        raise InputError(f"{path}: field 'axis' is {given.axis}, but --axis {args.axis} blocks "
                         f"axis {args.axis % x.ndim}")  # fmt: skip
    if given.block_size != block_size:
        raise InputError(f"{path}: field 'block_size' is {given.block_size}, but --block-size "
                         f"is {block_size}")  # fmt: skip
    bad = first_nonfinite(x)
    if bad is not None:
        raise InputError(f"{args.input}: holds {x[bad]} at {bad}; --scales needs finite "
                         "inputs (a finite scale gives NaN and Inf no encoding)")  # fmt: skip


def _warn_short_blocks(shape: tuple[int, ...], axis: int, block_size: int) -> None:
    """Say so on stderr when the blocked axis does not divide into whole blocks.

    The result is still the documented one (a short last block is quantized
    as it is, which equals zero padding); hardware usually requires whole
    blocks, so this is most often a wrong --axis or --shape.
    """
    if not shape or not -len(shape) <= axis < len(shape):
        return  # quantize reports a bad axis
    n = shape[axis]
    if block_size > n:
        sys.stderr.write(f"mxref: warning: --block-size {block_size} exceeds the blocked axis "
                         f"({n} elements): every block is one short block\n")  # fmt: skip
    elif n % block_size:
        sys.stderr.write(f"mxref: warning: the blocked axis has {n} elements, not a multiple of "
                         f"--block-size {block_size}: the last block of each row has "
                         f"{n % block_size}\n")  # fmt: skip
