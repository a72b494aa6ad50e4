"""The format registry and the readers added on it: each against the same data given as NPY
(the loss value must be equal), whole, in blocks, as shards, from stdin where the format
allows, under --dask local, and its errors."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from losscli import compute_files
from losscli.errors import InputError
from losscli.io import formats
from tests.conftest import DOCS, ROOT, assert_usage_error, run_cli

N, C = 23, 4


@pytest.fixture
def data(rng, tmp_path):
    """Logits (N, C) and class labels (N,), and the reference value from the NPY files."""
    x = rng.normal(size=(N, C))
    y = rng.integers(0, C, N)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    reference = _value("ce", tmp_path / "x.npy", tmp_path / "y.npy")
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    assert reference == pytest.approx(-logp[np.arange(N), y].mean(), rel=1e-12)
    return x, y, reference


def _json(*args) -> dict:
    out = run_cli(*args, "--dtype", "float64", "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


def _value(*args) -> float:
    out = run_cli(*args, "--dtype", "float64", "-f", "value")
    assert out.exit_code == 0, out.stderr
    return float(out.stdout)


def _piped(loss: str, *sources, data: bytes, **options) -> float:
    """The value with ``data`` as stdin (a stream: read once, in order)."""
    return compute_files(loss, *map(str, sources), stdin=io.BytesIO(data), dtype="float64",
                         **options).value  # fmt: skip


def _thirds(n: int):
    return [slice(0, 7), slice(7, 15), slice(15, n)]


# ------------------------------------------------------------------ the registry


def test_every_registered_format_is_a_choice_listed_and_documented():
    readme = DOCS
    listed = json.loads(run_cli("list-formats", "-f", "json").stdout)
    table = run_cli("list-formats").stdout
    help_out = run_cli("ce", "x", "y", "--input-format", "nope")
    assert help_out.exit_code == 2
    for fmt in formats.registry().values():
        assert fmt.name in help_out.stderr  # the choices Typer lists
        assert {"name": fmt.name, "extensions": list(fmt.extensions)}.items() <= next(
            item for item in listed if item["name"] == fmt.name
        ).items()
        assert fmt.name in table
        assert re.search(rf"`{re.escape(fmt.name)}`", readme), fmt.name
        for ext in fmt.extensions:
            assert ext in readme, (fmt.name, ext)


def test_magic_bytes_name_one_format_each(tmp_path, data):
    """Every format with magic bytes, written by its own library, is sniffed as itself and
    as no other (torch's ZIP archive is not an NPZ, and the reverse)."""
    import gzip

    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq
    import torch
    from safetensors.numpy import save_file

    x = data[0]
    torch.save(torch.from_numpy(x), tmp_path / "t")
    np.savez(tmp_path / "z.npz", a=x)
    save_file({"a": x}, tmp_path / "s")
    feather.write_feather(pa.table({"a": x[:, 0]}), tmp_path / "f")
    with pa.ipc.new_stream(tmp_path / "st", pa.schema([("a", pa.float64())])) as writer:
        writer.write_table(pa.table({"a": x[:, 0]}))
    pq.write_table(pa.table({"a": x[:, 0]}), tmp_path / "p")
    (tmp_path / "g").write_bytes(gzip.compress(b"1,2\n"))
    expected = {"t": "pt", "z.npz": "npz", "s": "safetensors", "f": "arrow", "st": "arrow",
                "p": "parquet", "g": "gzip", "x.npy": "npy"}  # fmt: skip
    for name, fmt in expected.items():
        head = (tmp_path / name).read_bytes()[: formats.head_bytes()]
        matching = [f.name for f in formats.registry().values() if f.magic and f.magic(head)]
        assert matching == [fmt], name
    assert formats.sniff(b"1.5,2\n3,4\n") is None


def test_importing_the_registry_imports_no_numpy_pyarrow_or_torch():
    code = (
        "import sys; from losscli.io import formats; formats.registry(); formats.head_bytes()\n"
        "print([m for m in ('numpy', 'pyarrow', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "encoding, name",
    [
        ("utf-16", "UTF-16LE"),  # with a BOM, little-endian here
        ("utf-16-le", "UTF-16LE"),
        ("utf-16-be", "UTF-16BE"),
        ("utf-32", "UTF-32LE"),
        ("utf-32-be", "UTF-32BE"),
    ],
)
def test_utf16_and_utf32_text_is_named_with_the_way_out(tmp_path, encoding, name):
    text = "0.5,1.5\n2.5,3.5\n".encode(encoding)
    path = tmp_path / "wide.csv"
    path.write_bytes(text)
    out = run_cli("mse", path, path)
    assert_usage_error(out, str(path), f"looks like {name} text", "save it as UTF-8")
    with pytest.raises(InputError, match=f"<stdin>: looks like {name} text"):
        _piped("mse", "-", path, data=text)


def test_bytes_that_are_not_text_list_the_registered_formats(tmp_path):
    path = tmp_path / "blob.csv"
    path.write_bytes(b"\x07\x00\x13\x00\x00\x00\x09")
    out = run_cli("mse", path, path)
    assert_usage_error(out, "not text (a NUL byte)", *formats.binary_names().split(", "))


# ------------------------------------------------------------------ .pt / .pth


def test_pt_tensors_by_key_equal_the_npy_run(tmp_path, data):
    import torch

    x, y, reference = data
    torch.save({"logits": torch.from_numpy(x), "labels": torch.from_numpy(y), "epoch": 3},
               tmp_path / "d.pt")  # fmt: skip
    torch.save([torch.from_numpy(x), torch.from_numpy(y)], tmp_path / "l.pth")
    torch.save(torch.from_numpy(x), tmp_path / "x.pt")
    d = tmp_path / "d.pt"
    one = _json("ce", f"{d}:logits", f"{d}:labels")
    assert one["value"] == pytest.approx(reference, rel=1e-12)
    assert one["inputs"]["predictions"]["format"] == "pt"
    assert _value("ce", f"{tmp_path / 'l.pth'}:0", f"{tmp_path / 'l.pth'}:1") == pytest.approx(
        reference, rel=1e-12
    )
    blocks = _value("ce", tmp_path / "x.pt", f"{d}:labels", "--block-rows", "4")
    assert blocks == pytest.approx(reference, rel=1e-12)
    (tmp_path / "noext").write_bytes((tmp_path / "x.pt").read_bytes())
    assert _value("ce", tmp_path / "noext", tmp_path / "y.npy") == pytest.approx(reference)
    piped = _piped("ce", "-", tmp_path / "y.npy", data=(tmp_path / "x.pt").read_bytes())
    assert piped == pytest.approx(reference, rel=1e-12)


def test_pt_shards_and_dask_equal_the_npy_run(tmp_path, data):
    pytest.importorskip("distributed")
    import torch

    x, y, reference = data
    for folder in ("xs", "ys"):
        (tmp_path / folder).mkdir()
    for i, rows in enumerate(_thirds(N)):
        torch.save({"logits": torch.from_numpy(x[rows])}, tmp_path / "xs" / f"s{i}.pt")
        torch.save(torch.from_numpy(y[rows]), tmp_path / "ys" / f"s{i}.pt")
    args = ("ce", f"{tmp_path / 'xs'}:logits", tmp_path / "ys")
    sharded = _json(*args)
    assert sharded["value"] == pytest.approx(reference, rel=1e-12)
    assert sharded["inputs"]["predictions"]["shards"] == 3
    assert _value(*args, "--dask", "local") == pytest.approx(reference, rel=1e-12)


def test_pt_without_a_key_or_with_a_wrong_one_lists_the_tensors(tmp_path, data):
    import torch

    x, y, _ = data
    d = tmp_path / "d.pt"
    torch.save({"logits": torch.from_numpy(x), "labels": torch.from_numpy(y), "epoch": 3}, d)
    y_npy = tmp_path / "y.npy"
    assert_usage_error(run_cli("ce", d, y_npy), "holds 2 tensors (logits, labels)", f"{d}:KEY")
    assert_usage_error(run_cli("ce", f"{d}:nope", y_npy), "'nope'", "tensors: logits, labels")
    assert_usage_error(run_cli("ce", f"{d}:epoch", y_npy), "is a int, not a tensor")
    torch.save({"a": "text"}, tmp_path / "s.pt")
    assert_usage_error(run_cli("ce", tmp_path / "s.pt", y_npy), "holds 0 tensors")
    torch.save(torch.from_numpy(x), tmp_path / "x.pt")
    assert_usage_error(run_cli("ce", f"{tmp_path / 'x.pt'}:a", y_npy), "holds one tensor")


class _RunsCode:
    """Unpickled, this would create its marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pt_that_would_run_code_is_refused_and_runs_none(tmp_path):
    import pickle

    import torch

    marker = tmp_path / "ran"
    torch.save({"x": _RunsCode(str(marker))}, tmp_path / "zip.pt")
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps(_RunsCode(str(marker)), protocol=2))
    np.save(tmp_path / "y.npy", np.zeros(2, dtype=int))
    for name in ("zip.pt", "legacy.pt"):
        out = run_cli("ce", tmp_path / name, tmp_path / "y.npy")
        assert_usage_error(out, name, "not a safe PyTorch file", "nothing in it was run")
        assert not marker.exists()


def test_reading_npy_does_not_import_torch_until_computing(tmp_path):
    """The .pt reader imports torch when it reads; reading other formats does not."""
    np.save(tmp_path / "a.npy", np.zeros(3))
    code = (
        "import sys; from losscli.io import read_input\n"
        f"read_input({str(tmp_path / 'a.npy')!r}); print('torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False", out.stderr


# ------------------------------------------------------------------ .safetensors


def test_safetensors_by_key_equal_the_npy_run(tmp_path, data):
    from safetensors.numpy import save_file

    x, y, reference = data
    s = tmp_path / "d.safetensors"
    save_file({"logits": x, "labels": y}, s)
    assert _value("ce", f"{s}:logits", f"{s}:labels") == pytest.approx(reference, rel=1e-12)
    blocks = _value("ce", f"{s}:logits", f"{s}:labels", "--block-rows", "5")
    assert blocks == pytest.approx(reference, rel=1e-12)
    save_file({"logits": x}, tmp_path / "one.safetensors")
    piped = _piped("ce", "-", tmp_path / "y.npy", data=(tmp_path / "one.safetensors").read_bytes())
    assert piped == pytest.approx(reference, rel=1e-12)
    (tmp_path / "noext").write_bytes((tmp_path / "one.safetensors").read_bytes())
    assert _value("ce", tmp_path / "noext", tmp_path / "y.npy") == pytest.approx(reference)


def test_safetensors_reads_only_the_named_tensor(tmp_path, data, monkeypatch):
    """Blocks of the named tensor come from slices of it; the other tensor is never read."""
    from safetensors.numpy import save_file

    x, y, reference = data
    s = tmp_path / "d.safetensors"
    save_file({"logits": x, "labels": y, "huge": np.zeros((1000, 100))}, s)
    import safetensors

    asked = []
    original = safetensors.safe_open

    class Recording:
        def __init__(self, *args, **kwargs):
            self.inner = original(*args, **kwargs)

        def __enter__(self):
            self.opened = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def get_tensor(self, key):
            asked.append(key)
            return self.opened.get_tensor(key)

        def get_slice(self, key):
            asked.append(key)
            return self.opened.get_slice(key)

    monkeypatch.setattr(safetensors, "safe_open", Recording)
    value = _value("ce", f"{s}:logits", f"{s}:labels", "--block-rows", "5")
    assert value == pytest.approx(reference, rel=1e-12)
    assert set(asked) == {"logits", "labels"}


def test_safetensors_shards_and_errors(tmp_path, data):
    from safetensors.numpy import save_file

    x, y, reference = data
    (tmp_path / "xs").mkdir()
    for i, rows in enumerate(_thirds(N)):
        save_file({"logits": x[rows]}, tmp_path / "xs" / f"s{i}.safetensors")
    assert _value("ce", tmp_path / "xs", tmp_path / "y.npy") == pytest.approx(reference)
    s = tmp_path / "d.safetensors"
    save_file({"logits": x, "labels": y}, s)
    y_npy = tmp_path / "y.npy"
    assert_usage_error(run_cli("ce", s, y_npy), "holds 2 tensors (labels, logits)", ":KEY")
    assert_usage_error(run_cli("ce", f"{s}:nope", y_npy), "'nope'", "tensors: labels, logits")
    (tmp_path / "bad.safetensors").write_bytes(s.read_bytes()[:40])
    assert_usage_error(
        run_cli("ce", tmp_path / "bad.safetensors", y_npy), "not a valid safetensors"
    )


# ------------------------------------------------------------------ Arrow IPC / Feather


def _arrow_table(x, y):
    import pyarrow as pa

    columns = {f"l{j}": x[:, j] for j in range(x.shape[1])}
    return pa.table({"id": [f"s{i % 3}" for i in range(len(y))], **columns, "label": y})


def _arrow_stream(table, path=None) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=6):
            writer.write_batch(batch)
    data = sink.getvalue().to_pybytes()
    if path is not None:
        path.write_bytes(data)
    return data


def test_arrow_file_feather_and_stream_equal_the_npy_run(tmp_path, data):
    import pyarrow.feather as feather

    x, y, reference = data
    table = _arrow_table(x, y)
    feather.write_feather(table, tmp_path / "t.feather", chunksize=5)
    _arrow_stream(table, tmp_path / "t.ipc")
    cols = ("--pred-cols", "l0,l1,l2,l3", "--target-cols", "label")
    for name in ("t.feather", "t.ipc"):
        whole = _json("ce", tmp_path / name, *cols)
        assert whole["value"] == pytest.approx(reference, rel=1e-12)
        assert whole["inputs"]["predictions"]["format"] == "arrow"
        blocks = _value("ce", tmp_path / name, *cols, "--block-rows", "4")
        assert blocks == pytest.approx(reference, rel=1e-12)
    stream = _arrow_stream(table)
    piped = _piped("ce", "-", data=stream, pred_cols="1:5", target_cols="label", block_rows=4)
    assert piped == pytest.approx(reference, rel=1e-12)
    (tmp_path / "noext").write_bytes((tmp_path / "t.feather").read_bytes())
    assert _value("ce", tmp_path / "noext", *cols) == pytest.approx(reference, rel=1e-12)


def test_arrow_group_by_and_two_files(tmp_path, data):
    import pyarrow as pa
    import pyarrow.feather as feather

    x, y, reference = data
    feather.write_feather(_arrow_table(x, y), tmp_path / "t.arrow")
    out = _json("ce", tmp_path / "t.arrow", "--pred-cols", "l0,l1,l2,l3", "--target-cols",
                "label", "--group-by", "id")  # fmt: skip
    groups = {g["group"]: g for g in out["by_group"]}
    assert sorted(groups) == ["s0", "s1", "s2"]
    assert sum(g["count"] for g in groups.values()) == N
    feather.write_feather(pa.table({"label": y}), tmp_path / "y.feather")
    feather.write_feather(pa.table({f"l{j}": x[:, j] for j in range(C)}), tmp_path / "x.arrow")
    assert _value("ce", tmp_path / "x.arrow", tmp_path / "y.feather") == pytest.approx(reference)


def test_arrow_shards_and_dask_equal_the_npy_run(tmp_path, data):
    pytest.importorskip("distributed")
    import pyarrow.feather as feather

    x, y, reference = data
    (tmp_path / "t").mkdir()
    for i, rows in enumerate(_thirds(N)):
        feather.write_feather(_arrow_table(x[rows], y[rows]), tmp_path / "t" / f"s{i}.arrow")
    cols = ("--pred-cols", "l0,l1,l2,l3", "--target-cols", "label")
    sharded = _json("ce", tmp_path / "t", *cols)
    assert sharded["value"] == pytest.approx(reference, rel=1e-12)
    assert sharded["inputs"]["predictions"]["shards"] == 3
    many = _value("ce", tmp_path / "t", *cols, "--dask", "local")
    assert many == pytest.approx(reference, rel=1e-12)


def test_corrupt_arrow_is_one_line(tmp_path, data):
    import pyarrow.feather as feather

    x, y, _ = data
    feather.write_feather(_arrow_table(x, y), tmp_path / "t.arrow")
    (tmp_path / "cut.arrow").write_bytes((tmp_path / "t.arrow").read_bytes()[:100])
    out = run_cli("ce", tmp_path / "cut.arrow", "--pred-cols", "l0,l1", "--target-cols", "label")
    assert_usage_error(out, "cut.arrow", "not a valid Arrow IPC file")


# ------------------------------------------------------------------ JSON Lines


def _jsonl(x, y, blank_after=None) -> str:
    lines = []
    for i, (row, label) in enumerate(zip(x, y)):
        lines.append(json.dumps({"id": f"s{i % 3}", "logits": row.tolist(), "label": int(label)}))
        if i == blank_after:
            lines.append("")
    return "\n".join(lines) + "\n"


def test_jsonl_list_field_is_a_group_of_columns(tmp_path, data):
    x, y, reference = data
    path = tmp_path / "rows.jsonl"
    path.write_text(_jsonl(x, y, blank_after=4))
    cols = ("--pred-cols", "logits", "--target-cols", "label")
    whole = _json("ce", path, *cols)
    assert whole["value"] == pytest.approx(reference, rel=1e-12)
    assert whole["inputs"]["predictions"]["shape"] == [N, C]
    assert whole["inputs"]["predictions"]["format"] == "jsonl"
    assert _value("ce", path, *cols, "--block-rows", "3") == pytest.approx(reference, rel=1e-12)
    by_group = _json("ce", path, *cols, "--group-by", "id")["by_group"]
    assert sorted(g["group"] for g in by_group) == ["s0", "s1", "s2"]
    piped = _piped("ce", "-", data=path.read_bytes(), input_format="jsonl",
                   pred_cols="logits", target_cols="label", block_rows=5)  # fmt: skip
    assert piped == pytest.approx(reference, rel=1e-12)
    (tmp_path / "x.ndjson").write_text("".join(json.dumps({"p": r.tolist()}) + "\n" for r in x))
    assert _value("ce", tmp_path / "x.ndjson", tmp_path / "y.npy") == pytest.approx(reference)


def test_jsonl_shards_and_dask_equal_the_npy_run(tmp_path, data):
    pytest.importorskip("distributed")
    x, y, reference = data
    (tmp_path / "j").mkdir()
    for i, rows in enumerate(_thirds(N)):
        (tmp_path / "j" / f"s{i}.jsonl").write_text(_jsonl(x[rows], y[rows]))
    cols = ("--pred-cols", "logits", "--target-cols", "label")
    sharded = _json("ce", tmp_path / "j", *cols)
    assert sharded["value"] == pytest.approx(reference, rel=1e-12)
    assert sharded["inputs"]["predictions"]["shards"] == 3
    many = _value("ce", tmp_path / "j", *cols, "--dask", "local")
    assert many == pytest.approx(reference, rel=1e-12)


def test_jsonl_ragged_lists_and_bad_lines_name_the_line(tmp_path):
    ragged = tmp_path / "ragged.jsonl"
    ragged.write_text('{"p": [1, 2], "y": 0}\n\n{"p": [1, 2], "y": 1}\n{"p": [3], "y": 1}\n')
    out = run_cli("ce", ragged, "--pred-cols", "p", "--target-cols", "y")
    assert_usage_error(out, "ragged.jsonl[p], line 4", "list of 1 values", "hold 2")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"p": 0.5, "y": 1}\n{"p": 0.5, "y": \n')
    assert_usage_error(run_cli("bce", bad, "--pred-cols", "p", "--target-cols", "y"),
                       "bad.jsonl, line 2: not valid JSON Lines")  # fmt: skip
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"p": 0.5, "y": 1}\n{"p": 0.25}\n')
    assert_usage_error(run_cli("bce", missing, "--pred-cols", "p", "--target-cols", "y"),
                       "column 'y' has a missing value, the first at line 2")  # fmt: skip
    out = run_cli("bce", missing, "--pred-cols", "q", "--target-cols", "y")
    assert_usage_error(out, "no column 'q'", "'p', 'y'")


# ------------------------------------------------------------------ compressed text


def _compress(kind: str, data: bytes) -> bytes:
    import bz2
    import gzip
    import lzma

    import zstandard

    return {
        "gz": gzip.compress,
        "bz2": bz2.compress,
        "xz": lzma.compress,
        "zst": zstandard.ZstdCompressor().compress,
    }[kind](data)


def _csv(x) -> bytes:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in x).encode()


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zst"])
def test_compressed_csv_equals_the_npy_run(tmp_path, data, kind):
    x, y, reference = data
    path = tmp_path / f"x.csv.{kind}"
    path.write_bytes(_compress(kind, _csv(x)))
    whole = _json("ce", path, tmp_path / "y.npy")
    assert whole["value"] == pytest.approx(reference, rel=1e-12)
    blocks = _value("ce", path, tmp_path / "y.npy", "--block-rows", "4")
    assert blocks == pytest.approx(reference, rel=1e-12)
    (tmp_path / "noext").write_bytes(path.read_bytes())  # known by its magic bytes
    assert _value("ce", tmp_path / "noext", tmp_path / "y.npy") == pytest.approx(reference)
    piped = _piped("ce", "-", tmp_path / "y.npy", data=path.read_bytes(), block_rows=4)
    assert piped == pytest.approx(reference, rel=1e-12)


def test_compressed_tsv_jsonl_and_shards(tmp_path, data):
    x, y, reference = data
    tsv = tmp_path / "x.tsv.xz"
    tsv.write_bytes(_compress("xz", _csv(x).replace(b",", b"\t")))
    out = _json("ce", tsv, tmp_path / "y.npy")
    assert out["value"] == pytest.approx(reference, rel=1e-12)
    assert out["inputs"]["predictions"]["format"] == "tsv+xz"
    rows = tmp_path / "rows.jsonl.gz"
    rows.write_bytes(_compress("gz", _jsonl(x, y).encode()))
    value = _value("ce", rows, "--pred-cols", "logits", "--target-cols", "label")
    assert value == pytest.approx(reference, rel=1e-12)
    (tmp_path / "xs").mkdir()
    for i, part in enumerate(_thirds(N)):
        (tmp_path / "xs" / f"s{i}.csv.gz").write_bytes(_compress("gz", _csv(x[part])))
    sharded = _json("ce", tmp_path / "xs", tmp_path / "y.npy")
    assert sharded["value"] == pytest.approx(reference, rel=1e-12)
    assert sharded["inputs"]["predictions"]["shards"] == 3


def test_compressed_csv_through_a_real_pipe(tmp_path, data):
    x, y, reference = data
    done = subprocess.run(
        [sys.executable, "-m", "losscli", "ce", "-", str(tmp_path / "y.npy"), "--dtype",
         "float64", "-f", "value"],
        input=_compress("gz", _csv(x)), capture_output=True, cwd=ROOT, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(reference, rel=1e-12)


def test_a_truncated_or_corrupt_compressed_stream_is_exit_2_in_one_line(tmp_path, data):
    x, _, _ = data
    whole = _compress("gz", _csv(x))
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole[:-20])
    out = run_cli("ce", cut, tmp_path / "y.npy")
    assert_usage_error(out, "cut.csv.gz: not a valid gzip stream", "ended before")
    with pytest.raises(InputError, match="<stdin>: not a valid gzip stream"):
        _piped("ce", "-", tmp_path / "y.npy", data=whole[:-20])
    garbled = tmp_path / "bad.csv.xz"
    garbled.write_bytes(_compress("xz", _csv(x))[:12] + b"\x00" * 40)
    assert_usage_error(run_cli("ce", garbled, tmp_path / "y.npy"), "not a valid xz stream")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_jsonl_in_a_wide_encoding_is_named_with_the_way_out(tmp_path, encoding):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"x": [1, 2], "y": 0}\n{"x": [3, 1], "y": 1}\n', encoding=encoding)
    out = run_cli("ce", path, "--pred-cols", "x", "--target-cols", "y")
    assert_usage_error(out, "UTF-", "save it as UTF-8")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('{"x": [1, 2], "y": 0}\nnot json\n', 2),
        ('{"x": [1, 2], "y": 0}\n\n\n{"x": [1, 2], "y": }\n', 4),
        ('\n{"x": [1, 2], "y": 0}\n{"x": [1, 2], "y": 1}\n[1, 2]\n', 4),
    ],
)
def test_a_jsonl_parse_error_names_the_files_line(tmp_path, text, line):
    path = tmp_path / "rows.jsonl"
    path.write_text(text)
    out = run_cli("ce", path, "--pred-cols", "x", "--target-cols", "y")
    assert_usage_error(out, f"line {line}:")


@pytest.mark.parametrize("kind", ["safetensors", "csv.gz", "csv.zst"])
def test_safetensors_and_compressed_shards_under_dask_equal_the_npy_run(tmp_path, data, kind):
    pytest.importorskip("distributed")
    from safetensors.numpy import save_file

    x, y, reference = data
    for folder in ("xs", "ys"):
        (tmp_path / folder).mkdir()
    for i, rows in enumerate(_thirds(N)):
        np.save(tmp_path / "ys" / f"s{i}.npy", y[rows])
        if kind == "safetensors":
            save_file({"logits": x[rows]}, tmp_path / "xs" / f"s{i}.safetensors")
        else:
            packed = _compress(kind.split(".")[1], _csv(x[rows]))
            (tmp_path / "xs" / f"s{i}.{kind}").write_bytes(packed)
    preds = f"{tmp_path / 'xs'}:logits" if kind == "safetensors" else tmp_path / "xs"
    on_dask = _json("ce", preds, tmp_path / "ys", "--dask", "local")
    assert on_dask["value"] == pytest.approx(reference, rel=1e-12)
    assert on_dask["inputs"]["predictions"]["shards"] == 3
