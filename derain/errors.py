"""Errors the command line reports as one line and a non-zero exit, instead of a traceback."""


class DerainError(Exception):
    """Bad input or an unusable output path; the message names the file and what is wrong."""
