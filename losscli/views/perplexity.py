"""Perplexity exp(mean) and bits per sample mean / ln 2, beside the value of a loss that
reads as a language model's (ce, nll) with a mean. Keeps nothing: it is of the value."""

from __future__ import annotations

import math

from losscli.views import View

ORDER = 20


def language_model(spec, reduction: str, value) -> dict[str, float]:
    """Perplexity and bits, for a loss whose spec says it reads as a language model's."""
    if not spec.perplexity or reduction != "mean" or not isinstance(value, float):
        return {}
    with_overflow = math.exp(value) if value < 709 else math.inf
    return {"perplexity": with_overflow, "bits": value / math.log(2)}


class Perplexity(View):
    name = "language_model"
    summary_at = "last"
    example = "losscli ce sample_data/logits.csv sample_data/labels.csv"

    def result(self, part, finish) -> dict[str, float] | None:
        return language_model(finish.spec, finish.reduction, finish.value) or None

    def to_json(self, shown: dict[str, float]) -> dict[str, float]:
        return dict(shown)

    def summary(self, shown: dict[str, float]) -> list[tuple[str, str]]:
        from losscli.values import format_number

        return [
            (
                "perplexity",
                f"{format_number(shown['perplexity'])} (exp of the mean); "
                f"{format_number(shown['bits'])} bits per sample",
            )
        ]

    def report_summary(self, result) -> list[tuple[str, str]]:
        from losscli.report.html import number

        if "perplexity" not in result:
            return []
        return [
            ("perplexity", number(result["perplexity"], "perplexity") + _meta("exp of the mean")),
            ("bits per sample", number(result["bits"], "bits") + _meta("the mean / ln 2")),
        ]


def _meta(text: str) -> str:
    return f'<br><span class="meta">{text}</span>'


VIEW = Perplexity()
