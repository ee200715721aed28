"""How a request will run: the plan (``plan``: ``ExecutionPlan``, ``PlanDecision``, the ``Planner`` interface,
``BasicPlanner`` for device and dtype only) and the memory planner that predicts peak VRAM and downgrades what does
not fit (``planner.MemoryPlanner``), also after a real out-of-memory error."""
from i2v.planning.plan import BasicPlanner, ExecutionPlan, PlanDecision, Planner
from i2v.planning.planner import InsufficientMemoryError, MemoryPlanner

__all__ = ["BasicPlanner", "ExecutionPlan", "InsufficientMemoryError", "MemoryPlanner", "PlanDecision", "Planner"]
