"""The same computation on a Dask cluster (``--dask ADDRESS``, ``--dask local``).

Each part of the input is one task: a shard (a file of a folder or a pattern), a row group
of a single Parquet file, a range of rows of single NPY files, or a single file of another
format. A task runs on a worker: it
reads its own part there (a local path, or an fsspec URL the worker can open), computes with
torch on the worker's device, writes its part of the gradient itself (``--grad-out DIR/``:
one ``.npy`` file per part, named after it), and returns its mergeable state
(``losscli.state``); only states travel to the client, which merges them into the result of
one run over every row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

from losscli.errors import InputError, OptionError
from losscli.options import Common
from losscli.registry import LossSpec

INSTALL = "pip install 'losscli[dask]'"


# The schemes of Dask's network comms that a scheduler listens on (``inproc://`` reaches only
# a scheduler in the same process: ``--dask local`` is that).
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
_HOST = re.compile(
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)
EXPECTED = "expected tcp://HOST:PORT (or tls://, ws://, wss://, ucx://), HOST:PORT, or 'local'"


def check_address(address: str, variable: str | None = None) -> None:
    """Refuse a ``--dask`` value that is not ``local``, ``HOST:PORT`` or
    ``SCHEME://HOST:PORT`` (a port in 1..65535, an IPv6 host in brackets), before anything
    connects: Dask's own parser ends in a ValueError, or a wait, that names neither the
    option nor what was expected. ``variable``: the environment variable it came from."""
    from losscli.output import escape

    problem = _address_problem(address)
    if problem is None:
        return
    named = f"{variable}=" if variable else "--dask "
    raise OptionError(f"{named}'{escape(address)}': {problem}; {EXPECTED}")


def _address_problem(address: str) -> str | None:
    """What is wrong with a scheduler address, or None."""
    if address == "local":
        return None
    if not address:
        return "no scheduler address"
    if not address.isprintable() or any(ch.isspace() for ch in address):
        return "the address holds spaces or control characters"
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = None, address
    elif scheme not in SCHEMES:
        return f"unknown scheme {scheme!r}"
    if rest.startswith("["):  # [IPv6]:PORT
        host, bracket, port = rest[1:].partition("]")
        if not bracket:
            return "an IPv6 host needs its closing ']'"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r} is not an IPv6 address"
        if not port.startswith(":"):
            return "no port number (HOST:PORT)"
        port = port[1:]
    else:
        host, colon, port = rest.rpartition(":")
        if not colon:
            return "no port number (HOST:PORT)"
        if not host:
            return "no host before the port"
        if not _HOST.fullmatch(host):
            return f"{host!r} is not a host name or an IP address"
        if all(part.isdigit() for part in host.split(".")):  # digits and dots: IPv4
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                return f"{host!r} is not an IPv4 address"
    if not port.isascii() or not port.isdigit():
        return f"port {port!r} is not a number" if port else "no port number (HOST:PORT)"
    if not 1 <= int(port) <= 65535:
        return f"port {int(port)} is outside 1..65535"
    return None


def _distributed():
    try:
        import distributed
    except ImportError:
        raise OptionError(f"--dask needs Dask's distributed scheduler: {INSTALL}") from None
    return distributed


@dataclasses.dataclass
class Part:
    """One task: a name (for its gradient file and messages) and one source text per input."""

    name: str
    sources: list[str]


def _query(arg) -> str | None:
    """The reading options ``arg`` was written with (after its '?'), or None."""
    if "?" in arg.text and arg.text != arg.path:
        return arg.text.rsplit("?", 1)[1]
    return None


def _with_query(arg, path: str) -> str:
    """``path`` with the NPZ key and reading options that ``arg`` was written with."""
    text = path + (f":{arg.key}" if arg.key is not None else "")
    query = _query(arg)
    return text if query is None else f"{text}?{query}"


def _with_option(arg, option: str) -> str:
    """``arg`` as written, with one more reading option (``rows=0:10``, ``row_group=2``)."""
    return f"{arg.text}{'?' if _query(arg) is None else '&'}{option}"


def plan(spec: LossSpec, texts: list[str], settings: Common) -> list[Part]:
    """The parts of a run: the shards of sharded inputs, taken in step (every sharded input
    must have as many), the row groups of a lone Parquet file, or the inputs whole."""
    from losscli.io import parse_source
    from losscli.io.shards import shard_args
    from losscli.plan import input_sources, reading_defaults

    defaults = reading_defaults(settings)
    texts = input_sources(spec, texts, settings)
    if any(parse_source(t, defaults).path == "-" for t in texts):
        raise OptionError("--dask reads every input on the workers: stdin ('-') cannot be one")
    args = [parse_source(t, defaults) for t in dict.fromkeys(texts)]
    shards = {arg.text: shard_args(arg) for arg in args}
    sharded = {t: s for t, s in shards.items() if s is not None}
    if sharded:
        counts = {t: len(s) for t, s in sharded.items()}
        if len(set(counts.values())) > 1 or len(sharded) != len(args):
            described = ", ".join(
                f"{t} ({counts[t]} shards)" if t in counts else f"{t} (one file)" for t in shards
            )
            raise InputError(
                f"--dask runs one task per shard, so every input needs as many shards: {described}"
            )
        count = next(iter(counts.values()))
        parts = []
        for i in range(count):
            by_text = {arg.text: _with_query(arg, sharded[arg.text][i].path) for arg in args}
            first = sharded[args[0].text][i].path
            parts.append(Part(_part_name(first), [by_text[t] for t in texts]))
        return parts
    ranges = _npy_ranges(args)
    if ranges:
        parts = []
        width = len(str(ranges[-1][1]))  # names that sort in row order
        for start, stop in ranges:
            by_text = {arg.text: _with_option(arg, f"rows={start}:{stop}") for arg in args}
            name = f"{_part_name(args[0].path)}.rows{start:0{width}d}-{stop:0{width}d}"
            parts.append(Part(name, [by_text[t] for t in texts]))
        return parts
    groups = _parquet_row_groups(args[0]) if len(args) == 1 else None
    if groups:
        return [
            Part(
                f"{_part_name(args[0].path)}.rg{g:0{len(str(groups))}d}",
                [_with_option(args[0], f"row_group={g}")] * len(texts),
            )
            for g in range(groups)
        ]
    return [Part(_part_name(args[0].path), list(texts))]


# Rows of a lone NPY file per task.
TASK_ROWS = 2_000_000


def _npy_rows(arg) -> int | None:
    fmt = arg.options.input_format or os.path.splitext(arg.path)[1].lower().lstrip(".")
    if fmt != "npy" or "://" in arg.path or not os.path.isfile(arg.path) or arg.options.rows:
        return None
    from losscli.io.arrays import npy_header

    try:
        with open(arg.path, "rb") as handle:
            shape, fortran, _ = npy_header(handle, arg.path, "NPY")
    except Exception:  # an unreadable file is reported by the task that reads it
        return None
    return shape[0] if shape and not fortran else None


def _npy_ranges(args) -> list[tuple[int, int]] | None:
    """Row ranges of TASK_ROWS rows where every input is a lone NPY file of the same rows."""
    rows = {_npy_rows(arg) for arg in args}
    if len(rows) != 1 or None in rows:
        return None
    count = rows.pop()
    if count <= TASK_ROWS:
        return None
    return [(a, min(a + TASK_ROWS, count)) for a in range(0, count, TASK_ROWS)]


def _parquet_row_groups(arg) -> int | None:
    """The row groups of a lone Parquet file (single-file mode), where it has several."""
    fmt = arg.options.input_format or os.path.splitext(arg.path)[1].lower().lstrip(".")
    if fmt != "parquet" or "://" in arg.path or not os.path.isfile(arg.path):
        return None
    import pyarrow.parquet as pq

    try:
        groups = pq.ParquetFile(arg.path).num_row_groups
    except Exception:  # an unreadable file is reported by the task that reads it
        return None
    return groups if groups > 1 else None


def _part_name(path: str) -> str:
    name = os.path.basename(path.rstrip("/")) or "part"
    stem = name.split(".")[0] or name
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)


def run_part(loss: str, sources: list[str], options: dict, fields: dict, grad_out) -> dict:
    """A task: one part read and computed on the worker; returns its state."""
    from losscli import run
    from losscli.registry import get_spec

    spec = get_spec(loss)
    settings = Common(**{**fields, "grad_out": grad_out, "emit_state": None, "dask": None})
    from losscli import state

    result, _ = run.run_local(spec, sources, options, settings, stdin=None, want_state=True)
    return state.plain(result.state)


def rescale_part(path: str, final: str, ratio: float) -> None:
    """A task: the part's gradient file ``path`` (written under a temporary name) multiplied
    by ``ratio`` (its run's denominator over the merged one) into ``final``, through a new
    file renamed into place; the temporary one is removed."""
    import numpy as np

    from losscli.io.write import BlockWriter

    if ratio == 1.0:
        os.replace(path, final)
        return
    written = np.load(path, mmap_mode="r")
    writer = BlockWriter(Path(final), written.shape[1:] if written.ndim else None, written.dtype)
    try:
        if written.ndim == 0:
            writer.add(np.asarray(written), ratio)
        else:
            step = max(1, (1 << 22) // max(1, int(np.prod(written.shape[1:]))))
            for start in range(0, len(written), step):
                writer.add(np.asarray(written[start : start + step]), ratio)
        writer.commit(ratio)
    finally:
        writer.close()
        del written
    os.unlink(path)


# How long a failed run waits for its other tasks, and for their cleanup, before it ends.
CLEANUP_WAIT_S = 60


def remove_parts(paths: list[str]) -> None:
    """A task (and the client's own last step): remove the temporary gradient parts of a run
    that did not finish, where they are."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


# How long a run tries to reach a scheduler before it gives up (exit 2).
CONNECT_TIMEOUT_S = 30


def _client(address: str):
    distributed = _distributed()
    if address == "local":
        import logging

        # A task's error reaches the user once, as losscli's one line; the in-process
        # workers' own logs of it (with tracebacks) stay quiet.
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        cluster = distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=max(1, min(4, os.cpu_count() or 1)),
            processes=False,  # threads of this process, talking in memory: no port opened
            dashboard_address=None,
        )
        return distributed.Client(cluster), cluster
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT_S), None
    except (OSError, TimeoutError) as error:
        raise OptionError(f"--dask {address}: cannot reach the scheduler ({error})") from None


def _count_rows_over_parts(spec: LossSpec, states: list[dict]) -> None:
    """Number the rows that the views keep of each part's state (the top rows) from the
    first row of the first part, as one process counts them over shards, row groups and
    ranges."""
    from losscli import views

    first = spec.inputs[0].name
    offset = 0
    for part in states:
        for view in views.all_views():
            if part.get(view.key) is not None:
                view.shift_rows(part[view.key], offset)
        shape = part["inputs"][first]["shape"]
        offset += shape[0] if shape else 1


def run(spec: LossSpec, texts: list[str], options: dict[str, Any], settings: Common, progress):
    """Run every part as a task on the cluster at ``settings.dask`` (an address that
    ``check_address`` accepted); returns (Result, Gate)."""
    from losscli import state, views
    from losscli.gate import gate_of

    if settings.reduction == "none":
        raise OptionError("--dask needs a reduced loss (--reduction mean, sum or batchmean)")
    parts = plan(spec, texts, settings)
    grad_dir = None
    if settings.grad_out is not None:
        grad_dir = Path(settings.grad_out)
        if grad_dir.suffix or (grad_dir.exists() and not grad_dir.is_dir()):
            raise OptionError(
                f"--grad-out {settings.grad_out}: with --dask, give a folder (DIR/): each task "
                "writes its part of the gradient there"
            )
        try:
            grad_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OptionError(
                f"--grad-out {settings.grad_out}: cannot make the folder "
                f"({error.strerror or error})"
            ) from None
    names = [part.name for part in parts]
    if len(set(names)) != len(names):  # shards with the same stem in two folders
        names = [f"{i:05d}-{name}" for i, name in enumerate(names)]
    # Each task writes its part under a temporary name; the parts take their names only once
    # every task succeeded and each is scaled to the merged mean, so a failed run leaves the
    # folder as it was.
    token = f"{os.getpid()}-{os.urandom(4).hex()}"
    temporary = {n: str(grad_dir / f".{n}.losscli-{token}.npy") for n in names} if grad_dir else {}
    fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(Common)}
    distributed = _distributed()
    client, cluster = _client(settings.dask)
    futures = []
    try:
        with progress(f"{spec.name} on {len(parts)} task(s) at {settings.dask}") as tracker:
            tracker.start(None)
            futures = [
                client.submit(
                    run_part,
                    spec.name,
                    part.sources,
                    options,
                    fields,
                    temporary.get(name),
                    key=f"losscli-{name}-{os.getpid()}-{i}",
                    pure=False,
                )
                for i, (part, name) in enumerate(zip(parts, names))
            ]
            states = []
            for future in futures:
                try:
                    states.append(future.result())
                except distributed.KilledWorker as error:
                    raise InputError(
                        f"--dask: a worker died while running a task ({error}); nothing was "
                        "merged, rerun"
                    ) from None
                tracker.advance(1)
            states = [state.read(name, part) for name, part in zip(names, states)]
            _count_rows_over_parts(spec, states)
            merged = state.merge(names, states)
            if grad_dir is not None:
                # Each part wrote the gradient of its own mean: scale it to the merged one,
                # on the worker that wrote it, into its name.
                where = client.who_has(futures)
                total = merged["denominator"]
                finals = [
                    client.submit(
                        rescale_part,
                        temporary[name],
                        str(grad_dir / f"{name}.npy"),
                        part_state["denominator"] / total if total else 1.0,
                        workers=list(where.get(future.key, ())) or None,
                        pure=False,
                    )
                    for future, name, part_state in zip(futures, names, states)
                ]
                client.gather(finals)
                temporary = {}
    finally:
        if temporary:  # the run did not finish: its parts go, the folder is as it was
            with contextlib.suppress(Exception):  # the tasks still running write theirs first
                distributed.wait(futures, timeout=CLEANUP_WAIT_S)
            with contextlib.suppress(Exception):
                cleanup = client.submit(remove_parts, list(temporary.values()), pure=False)
                cleanup.result(timeout=CLEANUP_WAIT_S)
            remove_parts(list(temporary.values()))
        client.close()
        if cluster is not None:
            cluster.close()
    result = state.to_result(merged, views.asked(settings))
    result.state = merged
    return result, gate_of(result, settings)
