"""The one error type the CLI turns into a clean message and exit status 1."""


class DeployError(Exception):
    """A failure the operator can act on; the message says what to do."""
