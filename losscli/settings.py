"""The settings of a run: the common options checked, split from the loss options."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from losscli.errors import OptionError
from losscli.options import Common
from losscli.registry import (
    FLAG,
    INTEGER,
    NUMBER,
    LossSpec,
    OptionSpec,
)


def check_settings(settings: Common) -> list[str] | None:
    """Refuse common option values outside their domain, and --report without Matplotlib
    (whose import it starts in the background); returns the --classes names."""
    if settings.report is not None:
        from losscli.report.charts import require

        require()
    for flag, value in (
        ("--fail-above", settings.fail_above),
        ("--fail-below", settings.fail_below),
    ):
        if value is not None and not math.isfinite(value):
            raise OptionError(f"{flag} {value} is not a finite number")
    if settings.classes is None:
        return None
    classes = [c.strip() for c in settings.classes.split(",")]
    if not all(classes):
        raise OptionError(f"--classes {settings.classes!r} has an empty name")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise OptionError(
            f"--classes names {', '.join(map(repr, repeated))} more than once; "
            "each class needs one name"
        )
    return classes


def split_settings(
    spec: LossSpec,
    values: dict[str, Any],
    environment: dict[str, str] | None = None,
    ignored: frozenset[str] = frozenset(),
) -> tuple[Common, dict[str, Any], dict[str, str]]:
    """Common settings and loss options from ``{long name: value}``, as the Python API and
    batch jobs give them: dashes or underscores, a leading ``--`` or not, ``no-NAME: true``
    for an off switch, lists for column and class names, numbers as numbers or text.
    ``environment`` supplies LOSSCLI_DEVICE as the command line does; names in ``ignored``
    are dropped (a batch's output options). Returns the settings,
    the loss options and ``{option: variable}`` for options taken from the environment."""
    import typing

    from losscli.options import _common_hints

    fields = {f.name for f in dataclasses.fields(Common)}
    own = {option.name for option in spec.options}
    named: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).lstrip("-").replace("-", "_")
        if name == "from":  # --from: a Python keyword, the field from_
            name = "from_"
        if name not in fields | own and name.startswith("no_") and isinstance(value, bool):
            name, value = name[3:], not value
        if name not in ignored:
            named[name] = value
    unknown = sorted(set(named) - fields - own)
    if unknown:
        raise OptionError(
            f"{spec.name} has no option {', '.join(unknown)}; its options: "
            f"{', '.join(sorted(own)) or 'none'}; common options: {', '.join(sorted(fields))}"
        )
    common = {}
    for name in sorted(set(named) & fields):
        common[name] = _common_value(name, named[name], _common_hints()[name], typing)
    from_environment = {}
    device = (environment or {}).get("LOSSCLI_DEVICE")
    if "device" not in common and device:
        common["device"], from_environment["device"] = device, "LOSSCLI_DEVICE"
    options = {name: named[name] for name in named if name in own}
    return Common(**common), options, from_environment


def _common_value(name: str, value: Any, hint, typing) -> Any:
    """A common option's value in its declared type (the checks Typer makes on the CLI)."""
    flag = f"--{name.replace('_', '-')}"
    if name in ("pred_cols", "target_cols", "classes", "group_by") and isinstance(
        value, (list, tuple)
    ):
        value = ",".join(map(str, value))
    columns = ("pred_cols", "target_cols", "group_by")
    if name in columns and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a column index
    kinds = [k for k in typing.get_args(typing.get_args(hint)[0]) or [typing.get_args(hint)[0]]]
    allowed = [
        a for k in kinds if typing.get_origin(k) is typing.Literal for a in typing.get_args(k)
    ]
    if value is None and type(None) in kinds:
        return None
    if allowed:
        if name != "reduction" and value not in allowed:  # reductions: checked per loss
            raise OptionError(f"{flag} {value!r} is not one of {', '.join(allowed)}")
        return value
    # Flags and numbers convert as loss options do (integers are >= 1, or in the domain of
    # the view whose option they are).
    if bool in kinds:
        return OptionSpec(name, None, FLAG, "").convert(value)
    if int in kinds:
        from losscli import views

        domain = {o.field: (o.low, o.high) for o in views.options()}.get(name, (1, None))
        return OptionSpec(name, None, INTEGER, "", low=domain[0], high=domain[1]).convert(value)
    if float in kinds:
        return OptionSpec(name, None, NUMBER, "").convert(value)
    if not isinstance(value, str):
        raise OptionError(f"{flag} {value!r} is not text")
    return value


def check_options(spec: LossSpec, options: dict[str, Any], reduction: str) -> dict[str, Any]:
    """The loss's options converted and checked from their declarations, defaults filled in."""
    if reduction not in spec.reductions:
        raise OptionError(
            f"--reduction {reduction!r} is not one of {', '.join(spec.reductions)} for {spec.name}"
        )
    return spec.convert_options(options)
