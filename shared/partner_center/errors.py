"""Errors of the Partner Center client. Messages carry service codes, never tokens or secrets."""


class PartnerCenterError(RuntimeError):
    """Partner Center or Entra ID refused a request, or answered something we cannot trust."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
