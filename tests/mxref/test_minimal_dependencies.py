"""mxref runs with numpy and numba alone: ml_dtypes and torch are optional."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_mxref_works_without_ml_dtypes_and_torch():
    # A None entry in sys.modules makes `import ml_dtypes` raise ImportError,
    # exactly as if it were not installed.
    script = textwrap.dedent(
        """
        import sys
        sys.modules["ml_dtypes"] = None
        sys.modules["torch"] = None
        import numpy as np
        import mxref
        from mxref import dtypes
        assert dtypes.BFLOAT16 is None
        x = np.linspace(-3, 3, 64, dtype=np.float32)
        mx = mxref.quantize(x, "mxfp4")
        out = mxref.dequantize(mx, np.float16)
        assert out.dtype == np.float16
        assert mxref.quantize_dequantize(x.astype(np.float16), "mxfp4").dtype == np.float16
        try:
            mxref.dequantize(mx, "bfloat16")
        except (TypeError, ValueError) as e:
            print("bf16:", e)
        print("ok", int(mx.codes.sum()))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "ok" in run.stdout
    assert "bf16: dtype must be" in run.stdout
