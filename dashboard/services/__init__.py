"""Domain services: plain functions called alike by web views, the CLI and the scheduler."""


class ServiceError(ValueError):
    """Bad input to a service: carries a field name (when one is to blame) and a message."""

    def __init__(self, message: str, field: str | None = None):
        message = str(message)  # lazy translations are resolved now: the API sends JSON
        super().__init__(message)
        self.message = message
        self.field = field
