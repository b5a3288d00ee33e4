"""The FreeBSD twin: test equipment standing in for FreeBSD/OPNsense hosts (see ../README.md)."""
