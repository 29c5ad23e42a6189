"""Attacks from issue 11, performed for real: each test is one untrusted party's move."""
