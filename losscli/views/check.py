"""``--check``: the relative error of the value and gradient against a float64 CPU
recomputation, and a finite-difference check of the gradient (``losscli.check.Check``, run
block by block beside the run; its partials merge)."""

from __future__ import annotations

from typing import Any

from losscli.views import Count, Number, Option, Part, View, not_negative, number, real

ORDER = 70


class CheckState(Part):
    """The --check partials: the float64 reference and the gradient differences."""

    sum: Number
    denominator: Number | None
    grad_diff_squares: Number | None
    grad_ref_squares: Number | None
    fd_max_rel_error: Number | None
    fd_points: Count


class CheckView(View):
    name = "check"
    option = Option(
        "--check",
        bool,
        "Also recompute in float64 on the CPU: relative error of the value and "
        "gradient, and a finite-difference check of the gradient on sampled rows.",
    )
    example = "losscli mse sample_data/y_pred.csv sample_data/y_true.csv --check"
    State = CheckState
    noun = "check"
    needs_gradients = True

    def start(self, setup):
        if not setup.asked:
            return None
        from losscli.check import Check

        return Check(setup.spec, setup.reduction, setup.grad, setup.convert_from, setup.dtype)

    def add(self, part, block) -> None:
        if hasattr(part, "add"):
            part.add(block.prepared, block.gradients, block.raw, block.gradient_scale)

    def _partials(self, part) -> dict[str, Any]:
        return part.to_state() if hasattr(part, "to_state") else part

    def dump(self, part) -> dict[str, Any]:
        return {
            k: v if v is None or isinstance(v, int) else number(v)
            for k, v in self._partials(part).items()
        }

    def load(self, path, data: CheckState, core) -> dict[str, Any]:
        """The --check partials: a denominator where the state has one, gradient sums where
        it has gradients."""
        import msgspec

        from losscli.errors import InputError

        reduction, grad = core["reduction"], bool(core["gradient"])
        out = msgspec.to_builtins(data)
        if (out["denominator"] is None) != (reduction == "sum"):
            raise InputError(
                f"{path}: check.denominator: {out['denominator']!r} for a {reduction} state"
            )
        for key in ("grad_diff_squares", "grad_ref_squares"):
            if (out[key] is None) == grad:
                raise InputError(f"{path}: check.{key}: {out[key]!r} where the state has "
                                 f"{'a' if grad else 'no'} gradient")  # fmt: skip
        for key in ("sum", "denominator", "grad_diff_squares", "grad_ref_squares",
                    "fd_max_rel_error"):  # fmt: skip
            if out[key] is not None:
                out[key] = real(path, f"check.{key}", out[key])
                if key != "sum":
                    not_negative(path, f"check.{key}", out[key])
        return out

    def combine(self, parts: list) -> dict[str, Any]:
        from losscli.check import merge

        return merge([self._partials(p) for p in parts])

    def result(self, part, finish) -> dict[str, Any]:
        from losscli.check import report

        # For reduction none, the sum of the elements stands for the value.
        value = finish.total if finish.reduction == "none" else finish.value
        check = report(self._partials(part), value, finish.dtype, finish.device)
        for message in check.pop("warnings"):
            if message not in finish.warnings:
                finish.warnings.append(message)
        return check

    def summary(self, shown) -> list[tuple[str, str]]:
        return [("check", check_text(shown))]

    def report_summary(self, result) -> list[tuple[str, str]]:
        from losscli.report.html import number

        check = result.get("check")
        if check is None:
            return []
        parts = [
            f"value {number(check['value_rel_error'], 'check.value_rel_error', 2)}",
            f"gradient {number(check['grad_rel_error'], 'check.grad_rel_error', 2)}",
        ]
        if check.get("fd_points"):
            most = number(check["fd_max_rel_error"], "check.fd_max_rel_error", 2)
            points = number(check["fd_points"], "check.fd_points")
            parts.append(f"finite differences {most} (max of {points} points)")
        return [("check: relative error vs float64 on cpu", ", ".join(parts))]


def check_text(check: dict) -> str:
    """What --check found, in one line."""

    def error(value) -> str:
        return "-" if value is None else f"{value:.2g}"

    text = (
        f"relative error vs float64 on cpu: value {error(check['value_rel_error'])}, "
        f"gradient {error(check['grad_rel_error'])}"
    )
    if check["fd_points"]:
        text += (
            f"; finite differences {error(check['fd_max_rel_error'])} "
            f"(max of {check['fd_points']} points)"
        )
    return text


VIEW = CheckView()
