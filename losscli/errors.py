"""Every user-facing failure is a LossCliError carrying the exit code the CLI returns."""

EXIT_GATE = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class LossCliError(Exception):
    """An error the user can act on: the message says what, where, and what was expected."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(LossCliError):
    """An input file or stream that cannot be read as the loss needs it."""


class OptionError(LossCliError):
    """An option value outside what the loss accepts."""


class DeviceError(LossCliError):
    """A --device that this torch build cannot use."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C (temporary files are removed)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
