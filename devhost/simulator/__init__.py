"""Partner Center simulator: a loopback HTTP server that behaves like the real service, quirks included.

from devhost.simulator import Simulator, WorldConfig, Fault
with Simulator(world=WorldConfig(customers=3)) as sim:
    ...  # point the client at sim.base_url / sim.authority with sim's credentials
"""

from devhost.simulator.faults import Fault, FaultSet
from devhost.simulator.server import Headers, RecordedRequest, Simulator
from devhost.simulator.world import World, WorldConfig

__all__ = ["Fault", "FaultSet", "Headers", "RecordedRequest", "Simulator", "World", "WorldConfig"]
