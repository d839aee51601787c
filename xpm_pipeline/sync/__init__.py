"""Keeping the warehouse in step with XPM: comparing what XPM returns with what the warehouse holds
(``compare``), for entities XPM gives no modified date or deleted flag for (time entries)."""
