"""Planning a run over files: the sources (each opened once), the reading defaults, the
requests of each input, the option files and the --group-by column."""

from __future__ import annotations

import numpy as np

from losscli.errors import OptionError
from losscli.options import Common
from losscli.registry import (
    INDEX,
    VECTOR,
    LossSpec,
)
from losscli.validate import Context


def input_sources(spec: LossSpec, sources: list[str], settings: Common) -> list[str]:
    """One source per input; in single-file mode the first file gives predictions and targets."""
    count = len(spec.inputs)
    single_file = settings.pred_cols is not None and settings.target_cols is not None
    if single_file and len(sources) == count - 1:
        sources = [sources[0], *sources]
    if len(sources) != count:
        names = " ".join(i.name.upper() for i in spec.inputs)
        hint = " (or one table file fewer with --pred-cols and --target-cols)" if count > 1 else ""
        raise OptionError(f"{spec.name} takes {count} input(s): {names}{hint}; got {len(sources)}")
    return sources


def _requests(spec: LossSpec, settings: Common):
    import numpy as np

    from losscli.io import Request, parse_columns

    float_dtype = np.float64 if settings.dtype == "float64" else np.float32
    requests = []
    for position, input_spec in enumerate(spec.inputs):
        columns = None
        if position == 0:
            columns = parse_columns(settings.pred_cols)
        elif position == 1:
            columns = parse_columns(settings.target_cols)
        names = input_spec.role == INDEX
        dtype = float_dtype if input_spec.differentiable and not settings.check else np.float64
        requests.append(Request(columns, names, dtype))
    return requests


def read_inputs(spec: LossSpec, args: list, sources, settings: Common, blocks=None, slots=None):
    """Every input as blocks of rows in lockstep ({input name: InputArray} per block);
    inputs that name one argument (single-file mode) share one read. ``blocks`` None reads
    each input whole (in as few blocks as its reader makes). ``slots``: (name, input
    position) of each argument, where they are not the loss's inputs in order (compare)."""
    from losscli.io import open_blocks
    from losscli.io.shards import shard_args, shard_blocks
    from losscli.stream import lockstep

    requests = _requests(spec, settings)
    positions_of: dict[int, list[int]] = {}
    for position, arg in enumerate(args):
        positions_of.setdefault(id(arg), []).append(position)
    groups = []
    for positions in positions_of.values():
        arg = args[positions[0]]
        slot = [slots[p] if slots else (spec.inputs[p].name, p) for p in positions]
        wanted = [requests[index] if isinstance(index, int) else index for _, index in slot]
        names = [name for name, _ in slot]
        shards = shard_args(arg)
        if shards is None:
            source = sources.open(arg)
            read = open_blocks(source, wanted, blocks)
            label = source.label
        else:
            read, label = shard_blocks(arg, shards, sources, wanted, blocks), arg.path
        groups.append((names, label, read))
    if not spec.chunkable:  # CTC: rows of its inputs do not line up; each is read whole
        from losscli.io import join_blocks

        return iter(
            [{n: a for names, _, read in groups for n, a in zip(names, join_blocks(list(read)))}]
        )
    return lockstep(groups)


# The name of the --group-by column among the inputs read in lockstep.
GROUP = "--group-by"


def group_slots(spec: LossSpec, texts: list[str], args: list, settings: Common):
    """The arguments and slots that read the --group-by column beside the inputs, from
    the one table of single-file mode."""
    from losscli.io import Request, parse_columns

    single = settings.pred_cols is not None and settings.target_cols is not None
    if not single or len(set(texts)) != 1:
        raise OptionError(
            "--group-by COL reads a column of the table that holds the predictions and the "
            "targets: give one file with --pred-cols and --target-cols"
        )
    columns = parse_columns(settings.group_by)
    kind, sep, _ = columns[0].partition(":") if columns else ("", "", "")
    if columns is None or len(columns) != 1 or (sep and kind not in ("name", "index")):
        raise OptionError(f"--group-by {settings.group_by!r} is not one column")
    slots = [(i.name, p) for p, i in enumerate(spec.inputs)]
    slots.append((GROUP, Request(columns, True, np.float64)))
    return [*args, args[0]], slots


def parse_sources(source_texts: list[str], settings: Common):
    """The reading defaults of the common options, and each argument parsed (an argument
    named twice, as single-file mode does, is one source, read once); stdin named twice is
    refused."""
    from losscli.io import parse_source

    defaults = reading_defaults(settings)
    parsed = {text: parse_source(text, defaults) for text in source_texts}
    if sum(parsed[text].path == "-" for text in source_texts) > 1:  # '-', '-?header=no'...
        raise OptionError(
            "only one input can come from stdin ('-'); write the others to files first"
        )
    return defaults, parsed


def reading_defaults(settings: Common):
    """The reading options that --input-format, --delimiter and --header give every input."""
    from losscli.io import ReadOptions
    from losscli.io.sources import delimiter_option, format_option

    return ReadOptions(
        format_option(settings.input_format), delimiter_option(settings.delimiter), settings.header
    )


def open_all(sources, args) -> None:
    """Open every argument (each shard of a folder or pattern) once, before any is read."""
    from losscli.io.shards import shard_args

    for arg in args:
        for shard in shard_args(arg) or [arg]:
            sources.open(shard)


def run_context(settings: Common, classes, notes: list[str]) -> Context:
    """What validation needs of the settings, with the notes reading made as warnings."""
    ctx = Context(
        reduction=settings.reduction,
        allow_nonfinite=settings.allow_nonfinite,
        classes=classes,
        dtype=settings.dtype,
    )
    for message in notes:
        ctx.warn(message)
    return ctx


def vector_options(spec: LossSpec, options: dict, sources, defaults, notes: list) -> dict:
    """The loss options with vectors given as files read (they are sources too)."""
    from losscli.io import read_vector

    options = dict(options)
    for option in spec.options:
        if option.kind == VECTOR and options.get(option.name) is not None:
            value = options[option.name]
            options[option.name] = read_vector(option.flag, value, sources, defaults, notes)
    return options
