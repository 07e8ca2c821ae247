"""The disturbances: what happens to a stack, how often, while it is under load."""
from dataclasses import dataclass


@dataclass
class Scenario:
    key: str
    label: str
    period: float = 0.0         # seconds between events; 0: no events
    max_requests: int = 0

    def act(self, stack, n):
        """The N-th event; returns an error text or None."""
        return None


class Reload(Scenario):
    def act(self, stack, n):
        return stack.reload()


class Kill(Scenario):
    def act(self, stack, n):
        return stack.kill_worker()


@dataclass
class Scale(Scenario):
    low: int = 2
    high: int = 8

    def act(self, stack, n):
        return stack.scale(self.high if n % 2 == 0 else self.low)


class Restart(Scenario):
    def act(self, stack, n):
        return stack.restart(n)


def all_scenarios(base_workers):
    return [
        Scenario("steady", "steady load (baseline)"),
        Reload("reload", "reload every 2 s", period=2.0),
        Kill("kill", "kill -9 a worker every 0.5 s", period=0.5),
        Scale("scale", f"scale {base_workers} → 8 → {base_workers} every 3 s", period=3.0,
              low=base_workers),
        Restart("restart", "restart front / app server every 5 s", period=5.0),
        Scenario("maxreq", "max_requests = 50", max_requests=50),
    ]


KEYS = ("steady", "reload", "kill", "scale", "restart", "maxreq")
