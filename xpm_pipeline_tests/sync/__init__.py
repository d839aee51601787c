"""The nightly comparison of XPM rows with the warehouse."""
