"""Defect thermodynamics of the B vacancy (issue 26): see defect_thermodynamics.py."""
