"""Errors that mean "the input is wrong", not "the code is wrong".

The CLI prints an `InputError` as one line (`error: <message>`) without a traceback; the message names what to
fix (a params key and its path, a clip and its file). Each subclass also derives from the builtin error a caller
would expect, so `except FileNotFoundError` / `except ValueError` keep working.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: params, local weights or data. The message is one line naming the item to fix."""


class MissingWeightsError(InputError, FileNotFoundError):
    """A params key names local model weights that are not there."""


class BadDataError(InputError, ValueError):
    """A clip, its video or its masks cannot be used; the message names the clip and the file."""


class MissingDataError(InputError, FileNotFoundError):
    """A file a clip needs is not there; the message names the clip and the file."""


class BadFileError(InputError, OSError):
    """A file the pipeline reads cannot be used (unreadable, truncated, damaged); the message names the path, the
    cause and how to get a good copy back."""


class IntegrityError(BadFileError):
    """An output's content differs from the digest written when it was exported (a damaged workspace file or DVC
    cache object); the message names the file and the fix."""


class WriteFailedError(InputError, OSError):
    """A file could not be written (no space left, read-only file system, no permission); the message names the
    path and the cause. Nothing half-written is left in place of an output."""


class TrackingStoreError(InputError, RuntimeError):
    """The MLflow tracking store cannot be used (unreachable server, locked or read-only database); the message
    names the URI and the cause."""


class RunStateBusyError(InputError, RuntimeError):
    """Another live process already trains in this run-state directory; the message names it and its pid."""
