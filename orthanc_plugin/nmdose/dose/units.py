"""Units of numeric SR items and header values, normalised to mGy, mGy·cm, MBq, s, mm, kV, mA, kg, m.

The unit comes from each NUM item's MeasurementUnitsCodeSequence (UCUM in conformant files). Known non-UCUM
spellings seen from vendors (``mGycm``, ``mGy*cm``, ``mGy·cm``, ``Gy.cm``, ``cGy.cm``, ``mCi``…) are accepted
and converted. A unit we do not know gives ``None`` and a warning: never a number in the wrong unit.
"""

from __future__ import annotations

from nmdose.dicom_sr import Code

# quantity -> {normalised unit spelling: factor to the target unit}
FACTORS: dict[str, dict[str, float]] = {
    "mGy": {"mGy": 1.0, "Gy": 1000.0, "cGy": 10.0, "dGy": 100.0, "uGy": 1e-3},
    "mGy.cm": {
        "mGy.cm": 1.0,
        "Gy.cm": 1000.0,
        "cGy.cm": 10.0,
        "dGy.cm": 100.0,
        "uGy.cm": 1e-3,
        "mGy.mm": 0.1,
        "mGy.m": 100.0,
        "Gy.m": 1e5,
        "uGy.m": 0.1,
        "cGy.m": 1000.0,
    },
    "MBq": {"MBq": 1.0, "Bq": 1e-6, "kBq": 1e-3, "GBq": 1e3, "mCi": 37.0, "uCi": 0.037, "Ci": 37000.0},
    "s": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0, "h": 3600.0, "d": 86400.0, "sec": 1.0},
    "mm": {"mm": 1.0, "cm": 10.0, "m": 1000.0, "um": 1e-3},
    "kV": {"kV": 1.0, "V": 1e-3},
    "mA": {"mA": 1.0, "A": 1000.0, "uA": 1e-3},
    "kg": {"kg": 1.0, "g": 1e-3, "[lb_av]": 0.45359237, "lb": 0.45359237},
    "m": {"m": 1.0, "cm": 0.01, "mm": 1e-3, "[in_i]": 0.0254},
    "ratio": {"{ratio}": 1.0, "1": 1.0, "ratio": 1.0, "{ratio}.": 1.0, "": 1.0},
    "mSv": {"mSv": 1.0, "Sv": 1000.0, "uSv": 1e-3},
    "a": {"a": 1.0, "mo": 1 / 12, "wk": 7 / 365.25, "d": 1 / 365.25},
}
# quantities for which a missing unit is harmless (dimensionless counts and ratios)
UNITLESS_OK = frozenset({"ratio"})

_MICRO = ("µ", "μ")


def normalise_unit(unit: str) -> str:
    """Vendor spelling to a UCUM-like one: ``mGycm``/``mGy*cm``/``mGy·cm``/``mGy cm`` -> ``mGy.cm``."""
    u = unit.strip()
    for m in _MICRO:
        u = u.replace(m, "u")
    u = u.replace("·", ".").replace("*", ".").replace("×", ".").replace(" ", ".")
    while ".." in u:
        u = u.replace("..", ".")
    low = u.lower()
    # glued forms: mGycm, cGycm, Gycm, mGymm
    for prefix in ("u", "c", "d", "m", ""):
        for length in ("cm", "mm", "m"):
            if low == f"{prefix}gy{length}":
                return f"{prefix}Gy.{length}"
    if low in ("mgy/cm",):  # a slash is always wrong for DLP; leave it unknown
        return u
    if low == "sec" or low == "secs":
        return "s"
    if low == "kvp":
        return "kV"
    return u


def unit_text(unit: Code | None) -> str | None:
    """The unit spelling to interpret: the code value (UCUM), or the meaning when the value is empty."""
    if unit is None:
        return None
    return unit.value or unit.meaning


def convert(value: float, unit: str | None, quantity: str) -> tuple[float | None, str | None]:
    """``(value in the target unit, None)`` or ``(None, reason)`` when the unit is missing or unknown."""
    table = FACTORS[quantity]
    if unit is None:
        if quantity in UNITLESS_OK:
            return value, None
        return None, f"no unit (expected {quantity})"
    factor = table.get(unit)
    if factor is None:
        factor = table.get(normalise_unit(unit))
    if factor is None:  # case-insensitive forms (UCUM's upper-case variant), only when unambiguous
        folded = normalise_unit(unit).lower()
        matches = [f for k, f in table.items() if k.lower() == folded]
        if len(matches) == 1:
            factor = matches[0]
    if factor is None:
        return None, f"unknown unit {unit!r} (expected {quantity})"
    return value * factor, None
