"""The one exception type for errors a user can cause; the CLI turns it into one line and exit code 2."""


class I2LError(ValueError):
    """Bad input (a file, an image, a checkpoint, an option): the message says what was wrong and what to do."""
