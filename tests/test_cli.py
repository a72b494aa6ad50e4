"""The command line: output formats, options, --grad-out, --per-sample, --steps, warnings,
meta commands, and a registry walk that keeps commands, list, explain, README and sample data
from drifting apart."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from losscli.registry import all_specs
from tests import reference as ref
from tests.conftest import (
    DOCS,
    ROOT,
    SAMPLE,
    assert_usage_error,
    read_back,
    rows_text,
    run_cli,
    run_process,
    sample_ce,
    torch_cuda_available,
)

LOGITS = str(SAMPLE / "logits.csv")
LABELS = str(SAMPLE / "labels.csv")
README = (ROOT / "README.md").read_text()


def sample_logits():
    return np.loadtxt(LOGITS, delimiter=","), np.loadtxt(LABELS).astype(int)


def test_table_output_shows_value_inputs_and_gradient():
    out = run_cli("ce", LOGITS, LABELS)
    assert out.exit_code == 0, out.stderr
    x, y = sample_logits()
    value = float(re.search(r"value\s+(\S+)", out.stdout).group(1))
    assert value == pytest.approx(ref.cross_entropy(x, y), rel=1e-6)
    for text in (
        "CrossEntropyLoss",
        "mean",
        "cpu",
        "float32",
        "[10, 5]",
        "class indices",
        "gradient",
        "L2 norm",
        "labels.csv",
    ):
        assert text in out.stdout, text


def test_piped_table_is_not_cut_at_80_columns(tmp_path):
    long_dir = tmp_path / ("a_very_long_folder_name_" * 4)
    long_dir.mkdir()
    logits = long_dir / "logits.csv"
    logits.write_bytes((SAMPLE / "logits.csv").read_bytes())
    done = run_process("ce", logits, LABELS, env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"})
    text = done.stdout.decode()
    assert str(logits) in text
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) > 80


def test_file_names_are_printed_literally(tmp_path):
    path = tmp_path / "[bold red]x :smile:.csv"
    path.write_bytes((SAMPLE / "logits.csv").read_bytes())
    out = run_cli("ce", path, LABELS)
    assert out.exit_code == 0
    assert "[bold red]x :smile:.csv" in out.stdout


def test_json_output_matches_spec_shape():
    out = run_cli("ce", LOGITS, LABELS, "-f", "json")
    data = json.loads(out.stdout)
    x, y = sample_logits()
    assert data["loss"] == "ce" and data["torch"] == "CrossEntropyLoss"
    assert data["value"] == pytest.approx(ref.cross_entropy(x, y), rel=1e-6)
    text = {"format": "csv", "header": False, "index_column": None, "shards": 1}
    assert data["inputs"] == {
        "predictions": {"source": LOGITS, "shape": [10, 5], "read_as": "values", **text},
        "targets": {"source": LABELS, "shape": [10], "read_as": "class indices", **text},
    }
    assert data["gate"] is None
    grad = ref.cross_entropy_grad(x, y)
    assert data["gradient"]["predictions"]["norm"] == pytest.approx(np.linalg.norm(grad), rel=1e-5)
    assert data["warnings"] == []
    assert out.stderr == ""


def test_value_output_is_repr_and_none_prints_one_per_line():
    out = run_cli("ce", LOGITS, LABELS, "-f", "value")
    assert out.stdout == repr(float(out.stdout)) + "\n"
    none = run_cli("ce", LOGITS, LABELS, "-f", "value", "-r", "none")
    x, y = sample_logits()
    values = [float(v) for v in none.stdout.split()]
    np.testing.assert_allclose(values, ref.cross_entropy(x, y, reduction="none"), rtol=1e-6)


def test_json_none_reduction_keeps_per_element_shape():
    out = run_cli("mse", SAMPLE / "y_pred.csv", SAMPLE / "y_true.csv", "-r", "none", "-f", "json")
    data = json.loads(out.stdout)
    assert np.shape(data["value"]) == (10, 3)


def test_no_grad_json_gradient_is_null():
    data = json.loads(run_cli("ce", LOGITS, LABELS, "--no-grad", "-f", "json").stdout)
    assert data["gradient"] is None


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".tsv", ".txt", ".parquet"])
def test_grad_out_writes_gradient_of_first_input(tmp_path, suffix):
    path = tmp_path / f"grad{suffix}"
    out = run_cli("ce", LOGITS, LABELS, "--grad-out", path, "-f", "value")
    assert out.exit_code == 0, out.stderr
    x, y = sample_logits()
    np.testing.assert_allclose(read_back(path), ref.cross_entropy_grad(x, y), rtol=1e-5, atol=1e-7)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_grad_out_k_dimensional_needs_npy(tmp_path):
    out = run_cli(
        "ce", SAMPLE / "seg_logits.npy", SAMPLE / "seg_labels.npy", "--grad-out", tmp_path / "g.csv"
    )
    assert out.exit_code == 2
    assert ".npy" in out.stderr
    ok = run_cli(
        "ce", SAMPLE / "seg_logits.npy", SAMPLE / "seg_labels.npy", "--grad-out", tmp_path / "g.npy"
    )
    assert ok.exit_code == 0
    assert np.load(tmp_path / "g.npy").shape == (4, 3, 6)


def test_per_sample_lists_first_limit_rows():
    out = run_cli("ce", LOGITS, LABELS, "--per-sample", "--limit", "4")
    x, y = sample_logits()
    per = ref.cross_entropy(x, y, reduction="none")
    section = out.stdout.split("per-sample loss")[1]
    rows = re.findall(r"^\s+(\d+)\s+(\S+)\s*$", section, re.M)
    assert [int(r) for r, _ in rows] == [1, 2, 3, 4]
    np.testing.assert_allclose([float(v) for _, v in rows], per[:4], rtol=1e-5)
    assert "first 4 of 10" in out.stdout


def _steps_rows(stdout: str):
    section = stdout.split("steps")[-1]
    return [line.split() for line in section.splitlines() if re.match(r"^\s+\d+\s", line)]


@pytest.mark.parametrize(
    ("args", "loss_fn"),
    [
        (["ce", LOGITS, LABELS], lambda: ref.cross_entropy(*sample_logits(), reduction="none")),
        (
            ["nll", str(SAMPLE / "log_probs.csv"), LABELS],
            lambda: ref.nll(
                np.loadtxt(SAMPLE / "log_probs.csv", delimiter=","),
                np.loadtxt(LABELS).astype(int),
                reduction="none",
            ),
        ),
        (
            ["mse", str(SAMPLE / "y_pred.csv"), str(SAMPLE / "y_true.csv")],
            lambda: ref.mse(
                np.loadtxt(SAMPLE / "y_pred.csv", delimiter=","),
                np.loadtxt(SAMPLE / "y_true.csv", delimiter=","),
                "none",
            ).ravel(),
        ),
        (
            ["l1", str(SAMPLE / "y_pred.csv"), str(SAMPLE / "y_true.csv")],
            lambda: ref.l1(
                np.loadtxt(SAMPLE / "y_pred.csv", delimiter=","),
                np.loadtxt(SAMPLE / "y_true.csv", delimiter=","),
                "none",
            ).ravel(),
        ),
        (
            ["bce", str(SAMPLE / "bce_probs.csv"), str(SAMPLE / "bce_targets.csv")],
            lambda: ref.bce(
                np.loadtxt(SAMPLE / "bce_probs.csv", delimiter=","),
                np.loadtxt(SAMPLE / "bce_targets.csv", delimiter=","),
                reduction="none",
            ).ravel(),
        ),
    ],
)
def test_steps_end_in_each_samples_loss(args, loss_fn):
    out = run_cli(*args, "--steps", "--limit", "5")
    assert out.exit_code == 0, out.stderr
    rows = _steps_rows(out.stdout)
    assert len(rows) == 5
    np.testing.assert_allclose([float(r[-1]) for r in rows], loss_fn()[:5], rtol=1e-5)
    assert "reduction mean: sum" in out.stdout


def test_ce_steps_show_softmax_target_probability_and_weight():
    out = run_cli(
        "ce",
        LOGITS,
        LABELS,
        "--steps",
        "--limit",
        "2",
        "--weight",
        "1,2,3,4,5",
        "--label-smoothing",
        "0.1",
    )
    header = next(line for line in out.stdout.splitlines() if "softmax p" in line)
    for column in ("logits", "p[target]", "-log p[target]", "w[target]", "smoothing term", "loss"):
        assert column in header
    assert "label smoothing 0.1" in out.stdout


@pytest.mark.parametrize(
    ("args", "warning"),
    [
        (["ce", str(SAMPLE / "target_probs.csv"), LABELS], "look like probabilities"),
        (["nll", LOGITS, LABELS], "not log-probabilities"),
    ],
)
def test_guidance_warnings_go_to_stderr_and_json(args, warning):
    out = run_cli(*args, "-f", "json")
    assert out.exit_code == 0
    assert warning in out.stderr
    assert any(warning in w for w in json.loads(out.stdout)["warnings"])
    quiet = run_cli(*args, "-f", "json", "-q")
    assert quiet.stderr == ""
    assert any(warning in w for w in json.loads(quiet.stdout)["warnings"])


def test_class_probability_targets_that_do_not_sum_to_one_warn(files):
    targets = files.csv("t.csv", np.abs(np.loadtxt(LOGITS, delimiter=",")))
    out = run_cli("ce", LOGITS, targets, "-f", "json")
    assert out.exit_code == 0 and "do not sum to 1" in out.stderr
    assert any("do not sum to 1" in w for w in json.loads(out.stdout)["warnings"])
    negative = run_cli("ce", LOGITS, LOGITS)  # logits are not probabilities: refused
    assert negative.exit_code == 2 and "not >= 0" in negative.stderr


def test_every_target_ignored_warns_and_value_is_nan(files):
    labels = files.text("y.csv", "-100\n-100\n")
    logits = files.csv("x.csv", np.zeros((2, 3)))
    out = run_cli("ce", logits, labels, "-f", "json")
    assert "every target (2 of 2)" in out.stderr
    assert json.loads(out.stdout)["value"] is None
    assert run_cli("ce", logits, labels, "-f", "value", "-q").stdout == "nan\n"
    assert run_cli("ce", logits, labels, "--fail-above", "10", "-q").exit_code == 1


def test_version_and_python_dash_m():
    from losscli import __version__

    assert run_cli("--version").stdout.strip() == f"losscli {__version__}"
    done = run_process("--version")
    assert done.returncode == 0 and done.stdout.decode().strip() == f"losscli {__version__}"


def test_shell_completion_is_offered():
    out = run_cli("--help")
    assert "--install-completion" in out.stdout
    assert "--show-completion" in out.stdout


@pytest.mark.parametrize("name", list(all_specs()))
def test_every_command_help_has_an_example(name):
    spec = all_specs()[name]
    out = run_cli(name, "--help")
    assert out.exit_code == 0
    assert spec.torch_class in out.stdout
    assert "Example:" in out.stdout
    for alias in spec.aliases:
        assert spec.torch_class in run_cli(alias, "--help").stdout


@pytest.mark.parametrize("name", list(all_specs()))
def test_registry_walk_keeps_commands_list_explain_readme_and_samples_in_step(name):
    spec = all_specs()[name]
    listing = run_cli("list").stdout
    assert re.search(rf"^\s+{re.escape(name)}\s", listing, re.M)
    assert spec.torch_class in listing
    explained = run_cli("explain", name)
    assert explained.exit_code == 0
    for part in ("Formula", "Inputs, in order", "Steps", "Common mistakes", spec.example):
        assert part in explained.stdout
    assert "\\n" not in explained.stdout
    assert spec.example in README, f"README lacks the example for {name}"
    argv = shlex.split(spec.example)
    for arg in argv[2:]:
        if arg.startswith("sample_data/"):
            assert (ROOT / arg).exists(), arg
    example = run_process(*argv[1:], "-f", "json")
    assert example.returncode == 0, example.stderr
    assert json.loads(example.stdout)["torch"] == spec.torch_class


def test_explain_aliases_and_unknown_loss():
    assert "CrossEntropyLoss" in run_cli("explain", "cross-entropy").stdout
    out = run_cli("explain", "nope")
    assert out.exit_code == 2
    assert "unknown loss" in out.stderr


def test_readme_holds_the_two_setup_commands_verbatim():
    assert "pip install . && losscli ce sample_data/logits.csv sample_data/labels.csv" in README
    assert "pip install -e '.[test]' && pytest" in README


def _readme_commands() -> list[str]:
    lines, joined = [], ""
    for line in DOCS.splitlines():
        line = joined + line.strip()
        joined = ""
        if line.endswith("\\"):
            joined = line[:-1] + " "
            continue
        command = line.split("  #")[0].strip().strip("`.")
        if command.startswith("losscli ") and "sample_data/" in command:
            lines.append(command)
    return lines


@pytest.mark.parametrize("command", sorted(set(_readme_commands())))
def test_every_readme_example_on_sample_data_runs(command, tmp_path):
    argv = shlex.split(command.split("|")[0])[1:]
    if "--grad-out" in argv:
        argv[argv.index("--grad-out") + 1] = str(tmp_path / "grad.npy")
    if "--report" in argv:
        argv[argv.index("--report") + 1] = str(tmp_path / "report.html")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        out = run_cli(*argv)
    assert out.exit_code == 0, (command, out.stderr)
    assert out.stdout


def test_grad_out_writes_first_input_of_multi_input_losses(tmp_path):
    out_path = tmp_path / "g.npy"
    out = run_cli(
        "triplet-margin",
        SAMPLE / "emb1.csv",
        SAMPLE / "emb2.csv",
        SAMPLE / "emb3.csv",
        "--grad-out",
        out_path,
        "-f",
        "json",
    )
    assert out.exit_code == 0, out.stderr
    import json

    data = json.loads(out.stdout)
    assert set(data["gradient"]) == {"anchor", "positive", "negative"}
    grad = np.load(out_path)
    assert grad.shape == (8, 5)
    assert np.linalg.norm(grad) == pytest.approx(data["gradient"]["anchor"]["norm"], rel=1e-5)


def test_ctc_impossible_target_warns_in_the_cli(files):
    lengths = files.text("short.csv", "2\n10\n11\n")
    out = run_cli(
        "ctc",
        SAMPLE / "ctc_log_probs.npy",
        SAMPLE / "ctc_targets.csv",
        lengths,
        SAMPLE / "ctc_target_lengths.csv",
        "-f",
        "json",
    )
    assert out.exit_code == 0
    assert "needs at least 4 frames" in out.stderr and "--zero-infinity" in out.stderr
    assert '"value": null' in out.stdout or '"value": Infinity' not in out.stdout


def test_importing_losscli_and_its_cli_does_not_import_torch():
    code = (
        "import sys, losscli, losscli.cli, losscli.meta\n"
        "print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch_cuda_available(), reason="no CUDA device")
def test_auto_picks_cuda():
    out = run_cli("ce", SAMPLE / "logits.csv", SAMPLE / "labels.csv", "-d", "auto", "-f", "json")
    assert '"device": "cuda:0"' in out.stdout


def test_a_new_loss_is_one_declaration(monkeypatch):
    """Registering a LossSpec is all a loss needs: the CLI builds its command, its options
    (converted and checked from their declaration), list and explain from it."""
    from losscli import registry

    monkeypatch.setattr(registry, "_SPECS", dict(registry.all_specs()))
    toy = registry.LossSpec(
        name="toy-huber",
        torch_class="HuberLoss",
        task="testing",
        summary="a Huber loss declared by a test",
        inputs=(
            registry.InputSpec("predictions", registry.FLOAT, "any shape"),
            registry.InputSpec("targets", registry.FLOAT, "the predictions' shape"),
        ),
        options=(
            registry.OptionSpec(
                "delta", 2.0, registry.NUMBER, "Toy threshold (> 0).", low=0.0, open_low=True
            ),
        ),
        prepare=registry.shared_prepare("prepare_same_shape"),
        example="losscli toy-huber sample_data/y_pred.csv sample_data/y_true.csv",
        explain=registry.Explain("toy formula", ("one step",), ("no mistakes",)),
    )
    registry.register(toy)  # the command comes from the registry when it is asked for
    x = np.loadtxt(SAMPLE / "y_pred.csv", delimiter=",")
    y = np.loadtxt(SAMPLE / "y_true.csv", delimiter=",")
    for delta in (0.5, 2.0):
        args = ["--delta", str(delta)] if delta != 2.0 else []
        out = run_cli(
            "toy-huber",
            SAMPLE / "y_pred.csv",
            SAMPLE / "y_true.csv",
            *args,
            "-f",
            "value",
            "--dtype",
            "float64",
        )
        assert out.exit_code == 0, out.stderr
        assert float(out.stdout) == pytest.approx(ref.huber(x, y, delta), rel=1e-12)
    refused = run_cli("toy-huber", SAMPLE / "y_pred.csv", SAMPLE / "y_true.csv", "--delta", "0")
    assert refused.exit_code == 2 and "--delta 0.0 is out of range" in refused.stderr
    assert "Toy threshold" in run_cli("toy-huber", "--help").stdout
    assert "toy-huber" in run_cli("list").stdout
    assert "toy formula" in run_cli("explain", "toy-huber").stdout


# ------------------------------------------------------------ SPEC section 8 at the command line


def test_numpy_warnings_never_reach_stderr(tmp_path):
    logp = tmp_path / "lp.csv"
    logp.write_text("-inf,0\n0,-inf\n")
    out = run_cli("nll", logp, SAMPLE / "pair_y.csv", "--allow-nonfinite")
    assert "RuntimeWarning" not in out.stderr and "Warning:" not in out.stderr


@pytest.mark.parametrize(
    "name", ["evil\nlosscli: error: forged.csv", "bell\x07\x1b[31mred.csv", "rtl\u202eosc.csv"]
)
def test_data_text_is_escaped_in_messages_and_tables(tmp_path, name):
    path = tmp_path / name
    path.write_text("1,2\n3,x\n")
    out = run_cli("mse", path, path)
    assert out.exit_code == 2
    assert len(out.stderr.splitlines()) == 1, out.stderr
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr and "\u202e" not in out.stderr
    good = tmp_path / (name + ".ok.csv")
    good.write_text("1,2\n3,4\n")
    table = run_cli("mse", good, good)
    assert table.exit_code == 0, table.stderr
    for raw in ("\n", "\x1b", "\x07", "\u202e"):
        if raw in name:
            assert (
                raw not in table.stdout.replace("\n", "")
                if raw == "\n"
                else raw not in table.stdout
            )
    assert len([line for line in table.stdout.splitlines() if "ok.csv" in line]) == 2


def test_header_and_npz_key_text_is_escaped(tmp_path):
    header = tmp_path / "h.csv"
    header.write_text("a\nb,c\x1b[31m\n1,2\n")
    out = run_cli("mse", header, header, "--pred-cols", "zz", "--target-cols", "c")
    assert out.exit_code == 2
    assert len(out.stderr.splitlines()) == 1 and "\x1b" not in out.stderr
    npz = tmp_path / "k.npz"
    np.savez(npz, **{"a\nb": np.ones(2), "c": np.ones(2)})
    out = run_cli("mse", npz, npz)
    assert_usage_error(out, "a\\x0ab")


def _start_when_ready(*args) -> subprocess.Popen:
    """Start ``python -m losscli ARGS`` and return once its signal handlers are in place
    (Linux: the SIGHUP bit, installed last, is in SigCgt of /proc/PID/status). A signal
    before that reaches the interpreter's own start-up, which no code of losscli's runs in
    (see losscli/entry.py); from then on the outcome does not depend on timing."""
    process = subprocess.Popen(
        [sys.executable, "-m", "losscli", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # a stack dump if _finish must abort
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{process.pid}/status") as status:
                caught = next(line for line in status if line.startswith("SigCgt:"))
        except (OSError, StopIteration):
            caught = "SigCgt: 0"
        if int(caught.split()[1], 16) >> (signal.SIGHUP - 1) & 1:
            return process
        if process.poll() is not None:
            break
        time.sleep(0.001)
    process.kill()
    raise AssertionError("losscli never installed its signal handlers")


def _finish(process: subprocess.Popen) -> tuple[bytes, bytes]:
    """Wait for a signalled run; one that has not ended in 60 s is aborted and the test fails
    with every thread's stack (faulthandler) rather than a bare timeout."""
    try:
        return process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        _, err = process.communicate()
        raise AssertionError("the run did not end after the signal:\n" + err.decode()) from None


def _big_ce_inputs(tmp_path):
    rng = np.random.default_rng(2)
    preds = tmp_path / "p.npy"
    np.save(preds, rng.normal(size=(400_000, 10)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 10, size=400_000))
    return preds, tmp_path / "y.npy"


needs_proc = pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="reads SigCgt from /proc"
)


@needs_proc
def test_sigterm_ends_a_real_run_cleanly(tmp_path):
    preds, labels = _big_ce_inputs(tmp_path)
    for delay in (0.3, 1.0, 2.0):
        process = _start_when_ready("ce", preds, labels, "--grad-out", tmp_path / "g.csv", "-q")
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        _, err = _finish(process)
        assert process.returncode in (0, 128 + signal.SIGTERM), err
        assert b"Traceback" not in err
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# A stop that arrives where a layer other than losscli's own sees it first: while the
# command of a loss is built (Typer turns a KeyboardInterrupt there into a silent exit code),
# inside a class's __set_name__ (Python reports the stop as a RuntimeError), and in the run.
_STOP_AT = {
    "build": """
import losscli.cli as cli
built = cli.add_loss_command
def add_loss_command(*args):
    os.kill(os.getpid(), SIGNUM)
    return built(*args)
cli.add_loss_command = add_loss_command
""",
    "set_name": """
import losscli.cli as cli
built = cli.add_loss_command
class Stop:
    def __set_name__(self, owner, name):
        os.kill(os.getpid(), SIGNUM)
def add_loss_command(*args):
    type("Holder", (), {"attribute": Stop()})
    return built(*args)
cli.add_loss_command = add_loss_command
""",
    "run": """
import losscli.cli as cli
def run_loss(*args):
    os.kill(os.getpid(), SIGNUM)
    raise AssertionError("the run went on after its stop")
cli.run_loss = run_loss
""",
}


@pytest.mark.parametrize("place", sorted(_STOP_AT))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_caught_by_any_layer_ends_with_its_code_and_one_line(tmp_path, place, signum):
    preds, labels = tmp_path / "p.csv", tmp_path / "l.csv"
    preds.write_text("1,2\n3,4\n")
    labels.write_text("0\n1\n")
    driver = (
        "import os, sys\n"
        "from losscli import entry\n"
        + _STOP_AT[place].replace("SIGNUM", str(int(signum)))
        + f"sys.argv = ['losscli', 'ce', {str(preds)!r}, {str(labels)!r}]\n"
        + "entry.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", driver], cwd=ROOT, capture_output=True,
                          timeout=120)  # fmt: skip
    word = b"interrupted" if signum == signal.SIGINT else b"terminated: signal %d" % signum
    assert done.returncode == (130 if signum == signal.SIGINT else 128 + signum), done.stderr
    assert done.stderr.splitlines() == [b"losscli: " + word], done.stderr
    assert done.stdout == b""


@needs_proc
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_modules_import_ends_as_one_later_does(tmp_path, signum):
    """From the moment the handlers are in place, through the imports of the app and of
    torch, into the run: exit 130 (SIGINT) or 128 + the signal, one line, no traceback,
    nothing on stdout, no file written."""
    preds, labels = _big_ce_inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8):
        process = _start_when_ready("ce", preds, labels, "--grad-out", out / "g.npy",
                                    "--emit-state", out / "s.json")  # fmt: skip
        time.sleep(delay)
        process.send_signal(signum)
        stdout, err = _finish(process)
        assert process.returncode == 128 + signum, (delay, err)
        assert b"Traceback" not in err and stdout == b"", (delay, err)
        word = b"interrupted" if signum == signal.SIGINT else b"terminated"
        assert err.strip().splitlines() == [b"losscli: " + word + (
            b"" if signum == signal.SIGINT else b": signal %d" % signum)], (delay, err)  # fmt: skip
        assert list(out.iterdir()) == [], delay


def _shell(command: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_closed_and_narrow_streams_keep_exit_codes():
    python = f'"{sys.executable}" -m losscli'
    ok = f"{python} ce {LOGITS} {LABELS}"
    bad = f"{python} ce {LOGITS} /nonexistent.csv"
    assert _shell(f"{ok} >&-").returncode == 0
    assert _shell(f"{bad} 2>&-").returncode == 2
    closed_stdin = _shell(f"{python} ce - {LABELS} <&-")
    assert closed_stdin.returncode == 2
    assert b"closed" in closed_stdin.stderr and b"terminal" not in closed_stdin.stderr
    ascii_run = _shell(f"{ok} --per-sample", env={"PYTHONIOENCODING": "ascii"})
    assert ascii_run.returncode == 0, ascii_run.stderr
    help_head = _shell(f"{python} --help | head -1; exit ${{PIPESTATUS[0]}}")
    assert help_head.returncode == 0, help_head.stderr
    assert b"Traceback" not in help_head.stderr and b"Exception" not in help_head.stderr


def test_environment_errors_name_the_variable():
    done = run_process("ce", LOGITS, LABELS, env={**os.environ, "LOSSCLI_DEVICE": "tpu"})
    assert done.returncode == 2
    assert done.stderr.decode().startswith("losscli: error: LOSSCLI_DEVICE=tpu: ")


def test_a_tripped_gate_says_so():
    out = run_cli("ce", LOGITS, LABELS, "-f", "json", "--fail-above", "0.5")
    assert out.exit_code == 1
    value = json.loads(out.stdout)["value"]
    assert value == pytest.approx(sample_ce(), rel=1e-6)
    assert out.stderr == f"losscli: gate: loss {value!r} is above 0.5\n"
    gate = json.loads(out.stdout)["gate"]
    assert gate["tripped"] is True and gate["fail_above"] == 0.5
    passed = run_cli("ce", LOGITS, LABELS, "-f", "json", "--fail-below", "0.5")
    assert passed.exit_code == 0 and "gate" not in passed.stderr
    assert json.loads(passed.stdout)["gate"]["tripped"] is False


@pytest.mark.parametrize("decimals", [2, 3])
def test_rounded_probabilities_given_to_ce_are_noticed(tmp_path, decimals):
    rng = np.random.default_rng(decimals)
    logits = rng.normal(size=(40, 7))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    path = tmp_path / "p.csv"
    path.write_text(rows_text(np.round(probs, decimals).tolist()))
    labels = tmp_path / "y.csv"
    labels.write_text("\n".join(map(str, rng.integers(0, 7, size=40))) + "\n")
    out = run_cli("ce", path, labels)
    assert out.exit_code == 0
    assert "look like probabilities" in out.stderr


def test_ce_integer_one_hot_targets_are_class_probabilities(tmp_path):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(6, 3))
    y = rng.integers(0, 3, size=6)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "onehot.npy", np.eye(3, dtype=np.int64)[y])
    out = run_cli(
        "ce", tmp_path / "x.npy", tmp_path / "onehot.npy", "-f", "json", "--dtype", "float64"
    )
    assert out.exit_code == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["value"] == pytest.approx(ref.cross_entropy(x, y), rel=1e-12)
    assert data["inputs"]["targets"]["read_as"] == "class probabilities"
    refused = run_cli("ce", tmp_path / "x.npy", tmp_path / "onehot.npy", "--ignore-index", "0")
    assert_usage_error(refused, "--ignore-index", "class-probability targets")


def test_class_names_in_messages_are_plain_text(tmp_path):
    np.save(tmp_path / "y.npy", np.array(["cat", "emu"]))
    np.save(tmp_path / "x.npy", np.zeros((2, 2)))
    out = run_cli("ce", tmp_path / "x.npy", tmp_path / "y.npy", "--classes", "cat,dog")
    assert_usage_error(out, "class name 'emu' is not a known class", "'cat', 'dog'")
    assert "np.str_" not in out.stderr


def test_classes_that_cannot_apply_are_said_to_be_unused(tmp_path):
    out = run_cli("ce", LOGITS, LABELS, "--classes", "a,b,c,d,e")
    assert out.exit_code == 0
    assert "--classes is not used" in out.stderr


def test_decimal_commas_are_pointed_out(tmp_path):
    path = tmp_path / "de.csv"
    path.write_text("0,5\n1,25\n2,75\n")
    out = run_cli("mse", path, path)
    assert out.exit_code == 0
    assert "decimal point" in out.stderr


def test_a_counting_first_row_over_integers_is_pointed_out(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("0,1,2\n1,0,3\n2,2,1\n")
    out = run_cli("mse", path, path, "-f", "json")
    assert out.exit_code == 0
    assert "may be a header of column numbers" in out.stderr and "?header=yes" in out.stderr


# ------------------------------------------------------------ batch


def _readme_jobs() -> list[dict]:
    """Every README example on sample_data (code lines and table cells) as a batch job."""
    jobs = []
    lines = [line.strip() for line in DOCS.splitlines() if line.strip().startswith("losscli ")]
    lines += re.findall(r"`(losscli [^`]*)`", DOCS)
    for line in dict.fromkeys(lines):
        if "sample_data/" not in line or "|" in line or "\\" in line:
            continue
        words = shlex.split(line.split("#")[0])[1:]
        if words[0] in ("list", "explain", "compare", "merge") or words[-1].endswith("\\"):
            continue
        inputs = [w for w in words[1:] if w.startswith("sample_data/")]
        rest = words[1 + len(inputs) :]
        options, i = {}, 0
        while i < len(rest):
            name = rest[i]
            if i + 1 < len(rest) and not rest[i + 1].startswith("-"):
                options[name] = rest[i + 1]
                i += 2
            else:
                options[name] = True
                i += 1
        jobs.append({"loss": words[0], "inputs": inputs, "options": options})
    return jobs


def _typed(options: dict) -> dict:
    aliases = {"-r": "reduction", "-f": "format", "-d": "device"}
    typed = {}
    for name, value in options.items():
        key = aliases.get(name, name.lstrip("-").replace("-", "_"))
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        elif isinstance(value, str) and value.replace(".", "", 1).lstrip("-").isdigit():
            value = float(value)
        typed[key] = value
    return typed


def test_batch_gives_each_command_lines_json_result_in_order(tmp_path):
    jobs = _readme_jobs()
    assert len(jobs) >= 20
    lines = []
    for n, job in enumerate(jobs):
        skipped = ("format", "steps", "per_sample", "grad_out", "report")
        options = {k: v for k, v in _typed(job["options"]).items() if k not in skipped}
        if options.get("weight") is not None or options.get("pos_weight") is not None:
            options = {
                k: (str(v) if k in ("weight", "pos_weight") else v) for k, v in options.items()
            }
        lines.append(json.dumps({**job, "options": options, "id": f"job-{n}"}))
    path = tmp_path / "jobs.ndjson"
    path.write_text("\n".join(lines) + "\n")
    out = run_cli("batch", path, "--jobs", "2")
    assert out.exit_code == 0, [r for r in out.stdout.splitlines() if '"error"' in r]
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in results] == [f"job-{n}" for n in range(len(jobs))]
    for job, result in zip(jobs, results):
        args = [*job["inputs"]]
        for name, value in job["options"].items():
            if name in ("-f", "--steps", "--per-sample", "--grad-out", "--report"):
                continue
            args += [name] if value is True else [name, value]
        alone = json.loads(run_cli(job["loss"], *args, "-f", "json").stdout)
        assert result["value"] == alone["value"], job
        assert result["gradient"] == alone["gradient"]


def test_batch_keeps_going_past_bad_jobs_and_exits_with_the_highest_code(tmp_path):
    good = {"loss": "mse", "inputs": ["sample_data/y_pred.csv", "sample_data/y_true.csv"]}
    jobs = [
        json.dumps({**good, "id": "gate", "options": {"fail_above": 0.0}}),
        "{not json",
        json.dumps({"loss": "mse", "inputs": ["missing.csv", "sample_data/y_true.csv"]}),
        json.dumps({**good, "options": {"delta": 1.0}, "id": "wrong option"}),
        json.dumps({**good, "inputs": ["-", "sample_data/y_true.csv"], "id": "stdin"}),
        json.dumps({**good, "id": "fine", "options": {"reduction": "sum", "dtype": "float64"}}),
    ]
    out = run_cli("batch", "-", input="\n".join(jobs) + "\n")
    assert out.exit_code == 2
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in results] == ["gate", 2, 3, "wrong option", "stdin", "fine"]
    assert results[0]["gate"]["tripped"] is True
    assert [r["error"]["exit"] for r in results[1:5]] == [2, 2, 2, 2]
    assert "missing.csv" in results[2]["error"]["message"]
    assert "no option delta" in results[3]["error"]["message"]
    x = np.loadtxt(SAMPLE / "y_pred.csv", delimiter=",")
    y = np.loadtxt(SAMPLE / "y_true.csv", delimiter=",")
    assert results[5]["value"] == pytest.approx(np.sum((x - y) ** 2), rel=1e-12)
    only_gate = run_cli("batch", "-", input=jobs[0] + "\n")
    assert only_gate.exit_code == 1


def test_batch_reads_jobs_as_the_python_api_reads_options(tmp_path):
    good = {"loss": "mse", "inputs": ["sample_data/y_pred.csv", "sample_data/y_true.csv"]}
    lines = [
        json.dumps({**good, "id": "ok"}),
        json.dumps(good)[:-1] + ', "id": NaN}',
        json.dumps({**good, "options": {"--no-header": True, "fail_above": "0.1"}}),
        json.dumps(
            {
                "loss": "multi-margin",
                "inputs": ["sample_data/logits.csv", "sample_data/labels.csv"],
                "options": {"p": "2.0"},
            }
        ),
        json.dumps({**good, "inputs": ["-:a", "sample_data/y_true.csv"]}),
        '{"loss": "mse", "inputs": ["a\u2028b.csv", "sample_data/y_true.csv"], "id": "sep"}',
        "[" * 100_000,
    ]
    jobs = tmp_path / "jobs.ndjson"
    jobs.write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode())
    out = run_cli("batch", jobs, "--jobs", "3")
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["id"] for r in results] == ["ok", 2, 3, 4, 5, "sep", 7]
    assert results[0]["value"] == results[2]["value"]
    assert results[2]["gate"]["tripped"] is True
    assert results[3]["options"]["p"] == 2
    assert "NaN is not JSON" in results[1]["error"]["message"]
    assert "cannot read stdin" in results[4]["error"]["message"]
    assert "a\u2028b.csv" in results[5]["error"]["message"]
    assert results[6]["error"]["exit"] == 2
    assert out.exit_code == 2


def test_a_batch_job_reads_neither_stdin_nor_the_jobs_file(tmp_path):
    good = {"loss": "mse", "inputs": ["sample_data/y_pred.csv", "sample_data/y_true.csv"]}
    jobs = tmp_path / "jobs.ndjson"
    jobs.write_text(
        json.dumps({**good, "options": {"grad_out": str(jobs)}, "id": "over"})
        + "\n"
        + json.dumps({**good, "inputs": [str(jobs), "sample_data/y_true.csv"], "id": "in"})
        + "\n"
    )
    before = jobs.read_bytes()
    out = run_cli("batch", jobs)
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert "a file this run reads" in results[0]["error"]["message"]
    assert "jobs file" in results[1]["error"]["message"]
    assert jobs.read_bytes() == before
    piped = [json.dumps({**good, "inputs": ["/dev/stdin", "sample_data/y_true.csv"], "id": 0})]
    piped += [json.dumps({**good, "id": n}) for n in range(1, 200)]
    done = run_process("batch", "-", input=("\n".join(piped) + "\n").encode())
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["id"] for r in lines] == list(range(200))
    assert "cannot read stdin" in lines[0]["error"]["message"]


def test_the_readme_is_short_and_points_at_every_docs_page():
    lines = README.splitlines()
    assert len(lines) <= 250, len(lines)
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":
            assert f"docs/{page.name}" in README, page.name


def test_the_docs_build_strictly_with_mkdocs(tmp_path):
    pytest.importorskip("mkdocs", reason="MkDocs is in the test extra: pip install -e '.[test]'")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "outputs" / "index.html").exists()


# The process ends without Python's teardown of the interpreter (losscli.entry): what it
# printed, wrote and registered to run at exit is all there, with the run's exit code.
_ENDING = (
    "import atexit, sys, threading, time\n"
    "from losscli import entry\n"
    "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
    "{before}"
    "sys.argv = ['losscli', *sys.argv[1:]]\n"
    "entry.main()\n"
)


@pytest.mark.parametrize(
    "args, code",
    [
        (["ce", "sample_data/logits.csv", "sample_data/labels.csv", "-f", "value"], 0),
        (["ce", "sample_data/logits.csv", "sample_data/labels.csv", "--fail-above", "0.1"], 1),
        (["ce", "sample_data/logits.csv", "no-such.csv"], 2),
        (["ce", "sample_data/logits.csv"], 2),
        (["list"], 0),
        (["--help"], 0),
    ],
)
def test_the_process_ends_with_its_code_its_output_and_its_exit_functions(args, code):
    driver = _ENDING.format(before="")
    done = subprocess.run([sys.executable, "-c", driver, *args], cwd=ROOT, capture_output=True,
                          timeout=120)  # fmt: skip
    plain = subprocess.run([sys.executable, "-m", "losscli", *args], cwd=ROOT,
                           capture_output=True, timeout=120)  # fmt: skip
    assert done.returncode == plain.returncode == code, done.stderr
    assert done.stdout == plain.stdout
    assert done.stderr.splitlines()[-1] == b"atexit ran"
    assert done.stderr.splitlines()[:-1] == plain.stderr.splitlines()


def test_a_large_output_through_a_pipe_arrives_whole(tmp_path):
    """Every line of reduction none's 300k elements reaches the reader, in order."""
    predictions = np.random.default_rng(3).normal(size=(100_000, 3))
    np.save(tmp_path / "p.npy", predictions)
    np.save(tmp_path / "t.npy", np.zeros_like(predictions))
    done = _shell(
        f"{shlex.quote(sys.executable)} -m losscli mse {tmp_path}/p.npy {tmp_path}/t.npy "
        "-r none -f value | cat"
    )
    assert done.returncode == 0, done.stderr
    values = np.array(done.stdout.split(), dtype=np.float64)
    expected = (predictions.astype(np.float32).astype(np.float64) ** 2).reshape(-1)
    np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_a_thread_still_running_at_the_end_is_waited_for(tmp_path):
    """A thread of the process that is still at work as the run ends finishes its work (the
    exit is Python's own then)."""
    mark = tmp_path / "mark"
    before = (
        "def late():\n"
        "    time.sleep(0.3)\n"
        f"    open({str(mark)!r}, 'w').write('done')\n"
        "end = entry._end_process\n"
        "def ending(code):\n"
        "    threading.Thread(target=late).start()\n"
        "    end(code)\n"
        "entry._end_process = ending\n"
    )
    args = ["ce", "sample_data/logits.csv", "sample_data/labels.csv", "-f", "value"]
    done = subprocess.run([sys.executable, "-c", _ENDING.format(before=before), *args],
                          cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert mark.read_text() == "done"
