"""Running a command's action: every failure becomes its exit code and one line on stderr
(a stop by a signal, losscli's own errors, a reader that went away, an internal error)."""

import signal
import warnings

from losscli import output
from losscli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, LossCliError, Terminated
from losscli.signals import say_stopped, stop_code, stop_signal


def guarded(debug: bool, action) -> int:
    """Run ``action``, mapping every failure to its exit code and one line on stderr.

    Python warnings (NumPy's RuntimeWarning, torch's UserWarning) never reach stderr: what
    matters of them is checked and said by losscli itself; --debug shows them.
    """

    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            return action()
    except LossCliError as error:
        output.error(error.message)
        return error.exit_code
    except KeyboardInterrupt:
        say_stopped(signal.SIGINT)
        return EXIT_INTERRUPTED
    except Terminated as stop:
        say_stopped(stop.signum)
        return stop_code(stop.signum)
    except BrokenPipeError:
        output.silence_stdout()
        return 0
    except Exception as error:
        signum = stop_signal()
        if signum is not None:  # raised while the stop unwound: the stop is what happened
            say_stopped(signum)
            return stop_code(signum)
        if debug:
            import traceback

            traceback.print_exc()
        else:
            output.error(
                f"internal error ({type(error).__name__}: {error}); "
                "rerun with --debug to see the traceback"
            )
        return EXIT_INTERNAL
