"""The one exception type that the command line turns into a single error line."""


class FieldkitError(Exception):
    """A problem with the user's input: the message names the file or value and what to do."""
