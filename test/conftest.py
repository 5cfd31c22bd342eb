"""Shared pytest set-up. Tests import the INSTALLED despite_core / despite_ros (make test re-installs
them from the working tree first), because the generated messages exist only in the install."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
