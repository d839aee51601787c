"""The XPM side: identity (OAuth), token storage, the connect flow, and the XPM API client."""

from xpm_pipeline.secrets import guard_http_loggers

guard_http_loggers()  # everything that talks HTTP to XPM or Xero identity lives in this package
