"""A simulated Azure DevOps organization served over real HTTP (tests, demo, benchmarks).

``model`` holds the data and its evolution in time, ``server`` the HTTP front (auth, faults,
rate limits, request log) and ``*_api`` modules the route handlers of each REST area.
"""

from exporter.simulator.model import Organization, Pipeline, Project, Run
from exporter.simulator.server import Fault, RecordedRequest, SimulatorServer, serve_forever

__all__ = [
    "Fault",
    "Organization",
    "Pipeline",
    "Project",
    "RecordedRequest",
    "Run",
    "SimulatorServer",
    "serve_forever",
]
