"""Clients of the other services of the suite, behind the points domain's ports."""
