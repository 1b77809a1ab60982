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
