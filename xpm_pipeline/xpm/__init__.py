"""The XPM side: identity (OAuth), token storage, the connect flow, and the XPM API client."""
