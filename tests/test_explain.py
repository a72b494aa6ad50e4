"""``losscli explain --lang``: the Chinese explanation of every loss keeps the English
structure, formula and code, the English one is unchanged, and no loss lacks its Chinese."""

from __future__ import annotations

import re

import pytest

from losscli import explain_zh
from losscli.meta import explain_text
from losscli.registry import all_specs
from tests.conftest import run_cli, run_process

CJK = re.compile(r"[\u4e00-\u9fff]")
# Code in prose that a translation keeps as it is: option flags, torch classes, shapes,
# identifiers with underscores, and loss commands named as words.
CODE = (
    re.compile(r"--[a-z][a-z-]*"),
    re.compile(r"\b[A-Z]\w*Loss\b"),
    re.compile(r"\([A-Z][A-Za-z0-9,.*]*\)"),
    re.compile(r"\b[a-z]\w*_\w+\b"),
)
KEYS = {"summary", "inputs", "options", "steps", "mistakes"}


def code_of(text: str) -> set[str]:
    found = {match for pattern in CODE for match in pattern.findall(text)}
    for name in all_specs():
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text):
            found.add(name)
    return found


def sections(text: str) -> dict[str, list[str]]:
    """The lines under each Chinese heading, by heading key ("head": the lines above)."""
    keys = {heading: key for key, heading in explain_zh.HEADINGS.items()}
    parts: dict[str, list[str]] = {"head": []}
    current = "head"
    for line in text.splitlines():
        if line in keys:
            current = keys[line]
            parts[current] = []
        elif line:
            parts[current].append(line)
    return parts


def explain(name: str, *lang: str) -> str:
    out = run_cli("explain", name, *lang)
    assert out.exit_code == 0, out.stderr
    assert out.stderr == ""
    return out.stdout


@pytest.mark.parametrize("name", list(all_specs()))
def test_chinese_explanation_keeps_the_english_structure_formula_and_code(name):
    spec = all_specs()[name]
    text = explain(name, "--lang", "zh")
    zh_formula = explain_zh.FORMULAS.get(name, spec.explain.formula)
    formula = "\n".join("  " + line for line in zh_formula.splitlines())
    assert f"\n{explain_zh.HEADINGS['formula']}\n{formula}\n\n" in text
    assert text.endswith(f"{explain_zh.HEADINGS['try']}\n  {spec.example} --steps\n")
    for english in ("Formula", "Inputs, in order", "Steps", "Common mistakes", "Try it"):
        assert english not in text

    parts = sections(text)
    expected = {"head", "formula", "inputs", "steps", "mistakes", "try"}
    assert set(parts) == expected | ({"options"} if spec.options else set())
    assert parts["head"][0] == f"{name}: {spec.origin}"
    assert CJK.search(parts["head"][1])
    assert [line.split("：")[0].strip() for line in parts["inputs"]] == list(spec.input_names)
    assert [line.split("（")[0].strip() for line in parts.get("options", [])] == [
        option.flag for option in spec.options
    ]
    steps = parts["steps"]
    assert [line.split(". ")[0].strip() for line in steps] == [
        str(n) for n in range(1, len(spec.explain.procedure) + 1)
    ]
    assert len(parts["mistakes"]) == len(spec.explain.mistakes)
    assert all(line.startswith("  - ") for line in parts["mistakes"])
    for key in ("inputs", "options", "steps", "mistakes"):
        for line in parts.get(key, []):
            assert CJK.search(line), (key, line)
    for option in spec.options:
        if option.domain:
            (line,) = [x for x in parts["options"] if x.strip().startswith(option.flag + "（")]
            assert explain_zh.VALID in line and "Valid" not in line


@pytest.mark.parametrize("name", list(all_specs()))
def test_translations_keep_the_code_of_the_english_texts(name):
    spec = all_specs()[name]
    entry = explain_zh.LOSSES[name]
    pairs = [(spec.summary, entry["summary"])]
    pairs += [(i.must_be, entry["inputs"][i.name]) for i in spec.inputs]
    pairs += [(o.help, entry["options"][o.name]) for o in spec.options]
    pairs += list(zip(spec.explain.procedure, entry["steps"]))
    pairs += list(zip(spec.explain.mistakes, entry["mistakes"]))
    for english, chinese in pairs:
        assert code_of(english) <= code_of(chinese), (english, chinese)


def test_every_loss_has_a_complete_chinese_entry():
    """A loss cannot be added, or given a step, input or option, without its Chinese text."""
    specs = all_specs()
    assert set(explain_zh.LOSSES) == set(specs)
    for name, spec in specs.items():
        entry = explain_zh.LOSSES[name]
        assert set(entry) == KEYS, name
        assert set(entry["inputs"]) == set(spec.input_names), name
        assert set(entry["options"]) == {option.name for option in spec.options}, name
        assert len(entry["steps"]) == len(spec.explain.procedure), name
        assert len(entry["mistakes"]) == len(spec.explain.mistakes), name
        texts = [entry["summary"], *entry["inputs"].values(), *entry["options"].values()]
        texts += [*entry["steps"], *entry["mistakes"]]
        for text in texts:
            assert isinstance(text, str) and text.strip() and CJK.search(text), (name, text)
    headings = explain_zh.HEADINGS
    assert set(headings) == {"formula", "inputs", "options", "steps", "mistakes", "try"}
    assert all(CJK.search(heading) for heading in headings.values())


@pytest.mark.parametrize("name", [*all_specs(), "kl", "mae", "cross-entropy"])
def test_english_is_the_default_and_unchanged(name):
    spec = all_specs().get(name)
    default = explain(name)
    assert explain(name, "--lang", "en") == default
    if spec is not None:
        assert default == explain_text(spec) + "\n"
        assert default.startswith(f"{name}: {spec.origin}\n{spec.summary}\n\n")
        assert "\nFormula\n" in default and "\nCommon mistakes\n" in default


def test_aliases_are_explained_in_chinese():
    assert explain("kl", "--lang", "zh") == explain("kl-div", "--lang", "zh")
    assert explain("cross-entropy", "--lang", "zh") == explain("ce", "--lang", "zh")


def test_ce_and_nll_tell_a_learner_which_inputs_they_take():
    ce = explain("ce", "--lang", "zh")
    nll = explain("nll", "--lang", "zh")
    bce = explain("bce", "--lang", "zh")
    assert "CrossEntropyLoss 自己会先做 log-softmax" in ce
    assert "对数概率" in nll and "log_softmax" in nll
    assert "sigmoid 的输出" in bce


def test_unknown_language_is_one_line_and_exit_2():
    done = run_process("explain", "ce", "--lang", "fr")
    assert done.returncode == 2
    assert done.stdout == b""
    lines = [line for line in done.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "--lang" in lines[0] and "'fr'" in lines[0] and "Traceback" not in lines[0]
    assert run_cli("explain", "ce", "--lang", "fr").exit_code == 2


def test_explain_text_refuses_an_unknown_language():
    from losscli.errors import OptionError

    with pytest.raises(OptionError, match="--lang 'fr'"):
        explain_text(all_specs()["ce"], "fr")


def test_help_shows_the_language_option_with_an_example():
    out = run_cli("explain", "--help")
    assert out.exit_code == 0
    assert "--lang" in out.stdout
    assert "losscli explain ce --lang zh" in " ".join(out.stdout.replace("│", " ").split())


# Words of English prose that a formula block may hold in English and not in Chinese.
PROSE = re.compile(
    r"\b(for|every|element|if|else|otherwise|adds|where|with|ignored|targets|count|neither|"
    r"probability|divides|clamped|logs|the|of|indices|row|before|its|first|over|alignments|"
    r"that|collapse|predicted|divergence|per|sample|column)\b"
)


@pytest.mark.parametrize("name", list(all_specs()))
def test_chinese_formula_is_chinese_prose_around_the_same_mathematics(name):
    english = all_specs()[name].explain.formula
    chinese = explain_zh.FORMULAS.get(name, english)
    assert not PROSE.search(chinese), (name, PROSE.search(chinese))
    identifiers = set(re.findall(r"\w+_\w+|--[a-z-]+|\d+\.?\d*", english))
    assert identifiers <= set(re.findall(r"\w+_\w+|--[a-z-]+|\d+\.?\d*", chinese)), name


@pytest.mark.parametrize("columns", [80, 60])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_explain_wraps_to_the_terminal_and_keeps_every_word(columns, lang):
    from rich.cells import cell_len

    from tests.test_layout import run_in_terminal

    for name in ("ce", "gaussian-nll", "ctc"):
        shown = run_in_terminal("explain", name, "--lang", lang, columns=columns)
        lines = shown.replace("\r", "").splitlines()
        assert max(cell_len(line) for line in lines) <= columns, (name, lines)
        piped = explain(name, "--lang", lang)
        assert max(cell_len(line) for line in piped.splitlines()) > columns  # it did wrap
        assert re.sub(r"\s+", "", shown) == re.sub(r"\s+", "", piped)  # and lost nothing
