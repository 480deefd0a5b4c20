"""The one exception type for problems the user can fix; its message is shown as-is in the UI and API."""


class UserError(Exception):
    """A problem with the user's input or files, explained in words meant for the user."""
