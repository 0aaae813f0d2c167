"""Egress verification: the WAN capture ring, its pruner and coverage, incident windows."""
