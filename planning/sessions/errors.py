"""What a session's services refuse, in words a member can read."""


class SessionError(Exception):
    """A room change that cannot be made now (the message says why); nothing was changed."""
