"""The error type of user mistakes, shared by every sub-command."""


class UserError(Exception):
    """An error caused by the user's input: ``kdlib`` prints it as one message, no traceback, exit 2."""
