"""Number formats: float32, float16, bfloat16 and int8, read from finfo / iinfo (notebook 05).

``format_table`` computes each format's bits, epsilon and limits from NumPy's / ml_dtypes'
``finfo`` / ``iinfo``; ``bit_fields`` and ``round_trip`` show how a value is stored and what
storing it costs; ``rounding_table`` puts the same values through every format.
"""

from __future__ import annotations

import math

import numpy as np

FORMATS = ("float32", "float16", "bfloat16", "int8")
FLOAT_FORMATS = ("float32", "float16", "bfloat16")


def _check_format(name: str, allowed=FORMATS) -> str:
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"Unknown number format {name!r}; choose one of {', '.join(allowed)}.")
    return name


def dtype_of(name: str):
    """The NumPy dtype of a format name (bfloat16 comes from ml_dtypes).

    Introduced in notebook 05.
    """
    import ml_dtypes

    _check_format(name)
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def finfo(name: str):
    """``finfo`` of a float format (ml_dtypes for bfloat16) or ``iinfo`` for int8.

    Introduced in notebook 05.
    """
    import ml_dtypes

    dt = dtype_of(name)
    if name == "int8":
        return np.iinfo(dt)
    return ml_dtypes.finfo(dt) if name == "bfloat16" else np.finfo(dt)


def format_table(formats=FORMATS):
    """The formats side by side, every number read from finfo/iinfo: bits, epsilon, limits.

    Columns: total bits, sign / exponent / mantissa bits (stored mantissa, without the
    implicit leading 1), machine epsilon (the gap between 1 and the next value), largest
    value, smallest normal and subnormal positive values, decimal digits. For int8 (a plain
    signed integer, no scale) the "epsilon" is the step 1, the smallest positive value is 1
    and there is no exponent or subnormal.

    Introduced in notebook 05.
    """
    import pandas as pd

    rows = []
    for name in formats:
        _check_format(name)
        info = finfo(name)
        if name == "int8":
            rows.append(
                {
                    "format": name,
                    "bits": info.bits,
                    "sign bits": 1,
                    "exponent bits": 0,
                    "mantissa bits": info.bits - 1,
                    "epsilon": 1.0,
                    "largest": float(info.max),
                    "smallest normal": 1.0,
                    "smallest subnormal": np.nan,
                    "decimal digits": int(np.floor(np.log10(info.max))),
                }
            )
        else:
            rows.append(
                {
                    "format": name,
                    "bits": info.bits,
                    "sign bits": 1,
                    "exponent bits": info.nexp,
                    "mantissa bits": info.nmant,
                    "epsilon": float(info.eps),
                    "largest": float(info.max),
                    "smallest normal": float(info.smallest_normal),
                    "smallest subnormal": float(info.smallest_subnormal),
                    "decimal digits": info.precision,
                }
            )
    return pd.DataFrame(rows).set_index("format")


def bit_fields(value: float, fmt: str) -> dict:
    """How ``value`` is stored in ``fmt``: its sign, exponent and mantissa bits as strings.

    Also returns the value actually stored. int8 is two's complement of round(value),
    clipped to [-128, 127]: its bits are all "mantissa" (value bits) after the sign.

    Introduced in notebook 05.
    """
    _check_format(fmt)
    dt = dtype_of(fmt)
    if fmt == "int8":
        stored = np.int8(np.clip(np.round(value), -128, 127))
        bits = format(int(stored.view(np.uint8)), "08b")
        return {"sign": bits[0], "exponent": "", "mantissa": bits[1:], "stored": float(stored)}
    info = finfo(fmt)
    stored = np.asarray(value, dtype=np.float64).astype(dt)
    uint = {16: np.uint16, 32: np.uint32}[info.bits]
    bits = format(int(stored.view(uint)), f"0{info.bits}b")
    return {
        "sign": bits[0],
        "exponent": bits[1 : 1 + info.nexp],
        "mantissa": bits[1 + info.nexp :],
        "stored": float(stored),
    }


def round_trip(values, fmt: str, scale: float | None = None) -> np.ndarray:
    """``values`` after being stored in ``fmt`` and read back, as float64.

    Float formats round to nearest (overflow gives inf, tiny values flush to 0). int8 needs
    a scale: ``q = clip(round(v / scale), -127, 127)``, read back as ``q * scale``; by default
    the symmetric scale max|v| / 127 of the values given (one scale for all of them, as
    per-tensor quantization does).

    Introduced in notebook 05.
    """
    _check_format(fmt)
    v = np.asarray(values, dtype=np.float64)
    if fmt != "int8":
        with np.errstate(over="ignore"):
            return v.astype(dtype_of(fmt)).astype(np.float64)
    if scale is None:
        peak = float(np.max(np.abs(v))) if v.size else 0.0
        scale = peak / 127 if peak > 0 else 1.0
    if not (isinstance(scale, (int, float, np.floating)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"the int8 scale must be a finite number > 0, got {scale!r}")
    return np.clip(np.round(v / scale), -127, 127) * scale


def rounding_table(values, formats=FORMATS):
    """The same values stored in each format: stored value and relative error, as a DataFrame.

    Introduced in notebook 05.
    """
    import pandas as pd

    v = np.asarray(values, dtype=np.float64)
    table = pd.DataFrame({"value": v})
    for fmt in formats:
        stored = round_trip(v, fmt)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(stored - v) / np.abs(v)
        table[f"{fmt}"] = stored
        table[f"{fmt} rel. error"] = rel
    return table
