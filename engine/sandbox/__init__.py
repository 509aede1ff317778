"""The sandbox: a simulated LinkedIn behind the Edges, LinkedAPI and ConnectSafely APIs."""

from __future__ import annotations
