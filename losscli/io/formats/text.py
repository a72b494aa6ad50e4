"""CSV, TSV and whitespace-separated text tables (the reader is ``losscli.io.text``)."""

from __future__ import annotations

from losscli.io.formats import Format


def _reader(delimiter: str | None, one_column: str | None):
    def read(source, requests, blocks):
        from losscli.io.text import text_blocks

        # A .csv with one column is still comma-separated: its cells may be quoted.
        chosen = source.arg.options.delimiter or delimiter
        header = source.arg.options.header
        return text_blocks(source, requests, chosen, header, one_column=one_column, blocks=blocks)

    return read


FORMATS = [
    Format("csv", (".csv",), "comma-separated text table", _reader(None, ","), columns=True),
    Format("tsv", (".tsv",), "tab-separated text table", _reader("\t", None), columns=True),
    Format(
        "txt",
        (".txt",),
        "text table, delimiter detected (tab, comma, semicolon, whitespace)",
        _reader(None, None),
        columns=True,
    ),
]
