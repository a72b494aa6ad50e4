"""Sources: each path or stdin opened exactly once, and the identity of every file read.

A regular file is opened once and kept open; readers seek in it or memory-map it through
that one descriptor. Anything else (a pipe, a FIFO, ``/dev/stdin``, ``<(...)`` process
substitution, a socket, a character device) is a stream: it is read once, to its end, into
memory, and never re-opened, ``stat``-sized or memory-mapped.

A source argument is ``PATH``, ``-`` (stdin), ``PATH:KEY`` (an array of a file with keys: NPZ,
``.pt``, safetensors), and may
end in ``?option=value&...`` to override the reading options for that input alone
(``header=yes|no``, ``delimiter=C``, ``format=NAME``, a name of ``losscli.io.formats``).
"""

from __future__ import annotations

import codecs
import io
import os
import re
import stat
import sys
from dataclasses import dataclass, replace
from urllib.parse import unquote

from losscli.errors import InputError, OptionError
from losscli.io import formats
from losscli.io.common import ReadOptions

DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "space": " "}
# A stream's first bytes are checked before the rest is read, so that /dev/zero or
# /dev/urandom given as text fails at once instead of filling memory.
FIRST_CHUNK = 1 << 16
STDIN = "-"


@dataclass(frozen=True)
class SourceArg:
    """A source as the user wrote it, taken apart: path (or ``-``), key, reading options."""

    text: str
    path: str
    key: str | None
    options: ReadOptions

    @property
    def label(self) -> str:
        """How messages and output name this input."""
        return "<stdin>" if self.path == STDIN else self.path


def delimiter_option(value: str | None, where: str = "--delimiter") -> str | None:
    """A delimiter option's value as one character (``tab``, ``\\t``, ``comma``... accepted)."""
    if value is None:
        return None
    value = DELIMITER_NAMES.get(value.lower(), value)
    if len(value) != 1 or value in '\r\n"' or value == "\0":
        raise OptionError(
            f"{where} {value!r} is not one character; give one character such as ',' ';' "
            "or 'tab' (quotes and line breaks cannot be delimiters)"
        )
    return value


def header_option(value: str, where: str) -> bool | None:
    lowered = value.lower()
    if lowered in ("yes", "true", "1", "on"):
        return True
    if lowered in ("no", "false", "0", "off"):
        return False
    if lowered in ("auto", "detect"):
        return None
    raise OptionError(f"{where} {value!r}: expected yes, no or auto")


def format_option(value: str | None, where: str = "--input-format") -> str | None:
    if value is None:
        return None
    if value.lower() not in formats.names():
        raise OptionError(f"{where} {value!r} is not one of {', '.join(formats.names())}")
    return value.lower()


def _query_options(text: str, query: str, defaults: ReadOptions) -> ReadOptions:
    options = defaults
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        name, value = unquote(name).strip().lower(), unquote(value)
        where = f"{text}: {name}="
        if not sep or not name:
            raise OptionError(
                f"{text}: reading option {part!r} is not NAME=VALUE "
                "(header=yes|no, delimiter=C, format=FMT)"
            )
        if name == "header":
            options = replace(options, header=header_option(value, where))
        elif name == "delimiter":
            options = replace(options, delimiter=delimiter_option(value, where))
        elif name == "format":
            options = replace(options, input_format=format_option(value, where))
        elif name == "row_group":
            if not value.isdigit():
                raise OptionError(f"{where}{value!r} is not a row group number (0, 1, ...)")
            options = replace(options, row_group=int(value))
        elif name == "rows":
            start, colon, stop = value.partition(":")
            if not (colon and start.isdigit() and stop.isdigit() and int(start) < int(stop)):
                raise OptionError(f"{where}{value!r} is not START:STOP (0-based, STOP excluded)")
            options = replace(options, rows=(int(start), int(stop)))
        else:
            raise OptionError(
                f"{text}: unknown reading option {name!r}; known: header, delimiter, format, "
                "row_group, rows"
            )
    return options


def is_url(path: str) -> bool:
    """Whether ``path`` is a URL that fsspec opens (``s3://bucket/x``, ``memory://x``)."""
    return re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", path) is not None and not os.path.lexists(path)


def is_pattern(path: str) -> bool:
    """Whether ``path`` is a glob pattern that matches something (and is not itself a file)."""
    import glob

    return any(ch in path for ch in "*?[") and not os.path.lexists(path) and bool(glob.glob(path))


def parse_source(text: str, defaults: ReadOptions) -> SourceArg:
    """Take a source argument apart. A name that exists as written is always a plain path;
    a URL takes reading options after '?' but no ':KEY'."""
    if text == STDIN or os.path.lexists(text):
        return SourceArg(text, text, None, defaults)
    if is_url(text):
        base, _, query = text.partition("?")
        options = _query_options(text, query, defaults) if query else defaults
        return SourceArg(text, base, None, options)
    base, options = text, defaults
    if "?" in base:
        head, query = base.rsplit("?", 1)
        if head == STDIN or os.path.lexists(head) or ":" in head or is_pattern(head):
            base, options = head, _query_options(text, query, defaults)
    key = None
    if base != STDIN and not os.path.lexists(base):
        # The first ':' whose left part exists splits PATH:KEY (keys may hold ':' too).
        for at in (i for i, ch in enumerate(base) if ch == ":"):
            head = base[:at]
            if head == STDIN or os.path.lexists(head) or is_pattern(head):
                base, key = head, base[at + 1 :]
                break
    return SourceArg(text, base, key, options)


@dataclass
class Source:
    """An opened source: a seekable binary file over its bytes, and what it is."""

    arg: SourceArg
    label: str
    file: io.BufferedIOBase
    regular: bool
    size: int  # -1 for a stream
    identity: tuple[int, int] | None
    head: bytes

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``, without moving a position that another
        reader of the same file may be using (a file named twice, read block by block)."""
        if self.regular:
            try:
                return os.pread(self.file.fileno(), size, offset)
            except OSError as error:
                raise os_error(self.label, error) from None
        return self.file.read_at(offset, size)

    def release(self, offset: int) -> None:
        """A stream's readers are past ``offset``: what it holds before can go."""
        if not self.regular:
            self.file.release(offset)

    def seekable_whole(self):
        """A file object over every byte (a stream read to its end, for formats whose
        index is at the end: Parquet, NPZ)."""
        if self.regular:
            return self.file
        return io.BytesIO(self.file.read_all())

    def sequential(self) -> SequentialReader:
        """A file object that reads this source once, in order, from its first byte
        (a stream's bytes are released as they are read: memory stays bounded)."""
        return SequentialReader(self)

    def format(self) -> str:
        """The format's name: the option, else the extension, else the content's magic
        bytes (a compressed stream by its extension or magic bytes whatever the option)."""
        path = None if self.arg.path == STDIN else self.arg.path
        fmt = formats.detect(self.arg.options.input_format, path, self.head)
        if self.arg.key is not None and not (fmt.keys or fmt.compression):
            keyed = ", ".join(f.name for f in formats.registry().values() if f.keys)
            raise OptionError(
                f"{self.arg.text}: a ':{self.arg.key}' suffix names an array of a file that "
                f"holds several ({keyed}), but {self.label} is read as {fmt.name}"
            )
        return fmt.name


class SequentialReader(io.RawIOBase):
    """A source read in order (for decompressors and Arrow streams), never seeked back."""

    def __init__(self, source: Source):
        self.source = source
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.source.read_at(self.offset, len(buffer))
        buffer[: len(data)] = data
        self.offset += len(data)
        self.source.release(self.offset)
        return len(data)


def os_error(label: str, error: OSError) -> InputError:
    reason = error.strerror or str(error)
    return InputError(f"{label}: cannot read: {reason}")


class StreamFile:
    """A stream (a pipe, a FIFO, stdin) read once, as far as its readers ask: what was read
    stays in memory until ``release`` says the readers are past it, so that a reader that
    goes through the stream in order holds only its current block. ``seek``/``read``/``tell``
    serve the bytes held (the header of a file, its first lines)."""

    def __init__(self, read, label: str, close=None):
        self._read, self.label, self._close = read, label, close
        self.buffer = bytearray()
        self.base = 0  # the offset of buffer[0] in the stream
        self.position = 0
        self.ended = False
        self.shared = False  # read by two inputs: nothing is released

    def _fill(self, end: int) -> None:
        while not self.ended and self.base + len(self.buffer) < end:
            try:
                data = self._read(max(end - self.base - len(self.buffer), FIRST_CHUNK))
            except OSError as error:
                raise os_error(self.label, error) from None
            if data:
                self.buffer += data
            else:
                self.ended = True

    def read_at(self, offset: int, size: int) -> bytes:
        if offset < self.base:  # pragma: no cover - a reader went back past a release
            raise RuntimeError(f"{self.label}: bytes at {offset} were already released")
        self._fill(offset + size)
        start = offset - self.base
        return bytes(self.buffer[start : start + size])

    def release(self, offset: int) -> None:
        """Forget the bytes before ``offset``: no reader will ask for them again."""
        drop = offset - self.base
        if drop > 0 and not self.shared:
            del self.buffer[:drop]
            self.base = offset

    def read_all(self) -> bytes:
        """Every byte of the stream (from the first held), for formats read whole."""
        self._fill(sys.maxsize)
        return bytes(self.buffer)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 2:
            self._fill(sys.maxsize)
            offset += self.base + len(self.buffer)
        elif whence == 1:
            offset += self.position
        self.position = offset
        return offset

    def tell(self) -> int:
        return self.position

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            self._fill(sys.maxsize)
            size = self.base + len(self.buffer) - self.position
        data = self.read_at(self.position, size)
        self.position += len(data)
        return data

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    @property
    def closed(self) -> bool:
        return False


def _open_stream(read, label: str, close=None) -> StreamFile:
    """A stream, its first bytes read; text that is plainly not text fails early."""
    stream = StreamFile(read, label, close)
    first = stream.read_at(0, FIRST_CHUNK)
    if formats.sniff(first) is None and first:
        _check_text_start(first, label)
    return stream


def _stream_source(arg: SourceArg, label: str, stream: StreamFile, identity) -> Source:
    """A Source over a stream; its first bytes (what sniffing needs) are held already."""
    return Source(arg, label, stream, False, -1, identity, stream.read_at(0, formats.head_bytes()))


def _check_text_start(data: bytes, label: str) -> None:
    """Refuse a stream whose first bytes are not text, naming the line as the reader would."""
    zero = data.find(b"\0")
    if zero >= 0:
        line = data.count(b"\n", 0, zero) + 1
        raise InputError(formats.not_text(label, line, data, "a NUL byte"))
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InputError(formats.not_text(label, line, data, "not UTF-8")) from None


class SourceSet:
    """Opens each source once and remembers the identity (device, inode) of everything read."""

    def __init__(self, stdin_fd: int | io.BufferedIOBase | None = 0):
        """``stdin_fd``: stdin's descriptor, None when it is closed, or a binary file object
        read in its place (the Python API and tests)."""
        self.stdin_fd = stdin_fd
        self._opened: dict[tuple[int, int], Source] = {}
        self._by_arg: dict[SourceArg, Source] = {}
        self.identities: dict[tuple[int, int], str] = {}

    def close(self) -> None:
        for source in [*self._opened.values(), *self._by_arg.values()]:
            source.file.close()
        self._opened.clear()
        self._by_arg.clear()

    def __enter__(self) -> SourceSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self, arg: SourceArg) -> Source:
        """Open ``arg`` (once: a regular file named twice is shared, a stream is refused)."""
        if arg not in self._by_arg:
            self._by_arg[arg] = self._open(arg)
        return self._by_arg[arg]

    def _open(self, arg: SourceArg) -> Source:
        if arg.path == STDIN:
            return self._open_stdin(arg)
        if is_url(arg.path):
            return self._open_url(arg)
        label = arg.label
        try:
            info = os.stat(arg.path)
        except OSError as error:
            raise os_error(label, error) from None
        identity = (info.st_dev, info.st_ino)
        if identity in self._opened:
            known = self._opened[identity]
            if known.arg.path == STDIN:
                raise InputError(
                    f"{label} is stdin, which '-' reads already; only one input can come from "
                    "stdin: write the others to files first"
                )
            # The same file or stream named again: one open, one read, shared. A stream
            # read by two inputs keeps every byte (each reads it at its own pace).
            if not known.regular:
                known.file.shared = True
            return replace(known, arg=arg, label=label)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{label}: cannot read: Is a directory")
        try:
            fd = os.open(arg.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as error:
            raise os_error(label, error) from None
        source = self._from_fd(arg, label, fd, owned=True)
        self._opened[source.identity or identity] = source
        return source

    def _open_url(self, arg: SourceArg) -> Source:
        """An fsspec URL (s3://, gs://, memory://...), read as a stream: in order, once."""
        try:
            import fsspec
        except ImportError:
            raise InputError(
                f"{arg.path}: reading a URL needs fsspec (pip install 'losscli[dask]') and the "
                "package of its filesystem"
            ) from None
        try:
            handle = fsspec.open(arg.path, "rb").open()
        except (OSError, ValueError, ImportError) as error:
            raise InputError(f"{arg.path}: cannot read: {error}") from None
        stream = _open_stream(handle.read, arg.path, handle.close)
        return _stream_source(arg, arg.path, stream, None)

    def _open_stdin(self, arg: SourceArg) -> Source:
        fd = self.stdin_fd
        label = "<stdin>"
        if fd is not None and not isinstance(fd, int):
            stream = _open_stream(fd.read, label)
            return _stream_source(arg, label, stream, None)
        try:
            if fd is None:
                raise OSError
            info = os.fstat(fd)
        except OSError:
            raise InputError(
                "'-' reads stdin, but stdin is closed; pipe the data in "
                "(python predict.py | losscli ...), pass a file path, or from Python give "
                "compute_files a stdin= file"
            ) from None
        if os.isatty(fd):
            raise InputError(
                "'-' reads from stdin, but stdin is a terminal; pipe the data in "
                "(python predict.py | losscli ...) or pass a file path"
            )
        identity = (info.st_dev, info.st_ino)
        known = self._opened.get(identity)
        if known is not None and not known.regular:
            raise InputError(
                f"stdin is also named as {known.label}; only one input can come "
                "from stdin: write the others to files first"
            )
        source = self._from_fd(arg, label, fd, owned=False, stream=True)
        if not stat.S_ISREG(info.st_mode):  # a file redirected to stdin is not a stream
            self._opened[identity] = source
        return source

    def _from_fd(self, arg, label, fd, *, owned: bool, stream: bool = False) -> Source:
        try:
            info = os.fstat(fd)
        except OSError as error:
            raise os_error(label, error) from None
        identity = (info.st_dev, info.st_ino)
        self.identities[identity] = label
        if stat.S_ISDIR(info.st_mode):
            if owned:
                os.close(fd)
            raise InputError(f"{label}: cannot read: Is a directory")
        if stat.S_ISREG(info.st_mode) and not stream:
            handle = os.fdopen(fd, "rb")
            try:
                head = handle.read(formats.head_bytes())
                handle.seek(0)
            except OSError as error:
                handle.close()
                raise os_error(label, error) from None
            return Source(arg, label, handle, True, info.st_size, identity, head)
        close = (lambda: os.close(fd)) if owned else None
        try:
            stream = _open_stream(lambda size: os.read(fd, size), label, close)
        except BaseException:
            if owned:
                os.close(fd)
            raise
        return _stream_source(arg, label, stream, identity)


def stdin_fd() -> int | None:
    """The descriptor of stdin, or None when the process was started with stdin closed."""
    if sys.stdin is None:
        return None
    try:
        fd = sys.stdin.fileno()
        os.fstat(fd)
    except (OSError, ValueError, AttributeError):
        return None
    return fd


def file_identity(path: str):
    """(device, inode) of a file, through links; the path itself where it cannot be read
    (reading it says why)."""
    try:
        info = os.stat(path)
    except OSError:
        return path
    return (info.st_dev, info.st_ino)


def read_whole(path: str) -> bytes:
    """The bytes of a small file read whole (a state), or InputError saying why not."""
    from losscli.errors import InputError

    if os.path.isdir(path):
        raise InputError(f"{path}: cannot read: Is a directory")
    try:
        with open(path, "rb") as handle:
            return handle.read(1 << 30)
    except OSError as error:
        raise os_error(path, error) from None
