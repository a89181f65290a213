"""The error a user sees as one line: what is wrong, where, and what would be accepted."""


class EdgetuneError(ValueError):
    """A problem with the user's input or environment that stops the run.

    The message is complete on its own: it names the file, field or value at fault and
    what is accepted. Entry points print it as one line and exit non-zero.
    """
