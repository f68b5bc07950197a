"""The white-box agent: the interleaved-thinking tool loop, tool-call checking, context managers.

`run_demo` (agent/demo.py) is not re-exported here so that importing the loop never pulls in rich.
"""

from forgerl.agent.context import ContextManager, DropOldToolOutputs
from forgerl.agent.loop import run_episode
from forgerl.agent.tools import ToolOutcome, argument_problems, run_tool_calls

__all__ = ["ContextManager", "DropOldToolOutputs", "ToolOutcome", "argument_problems", "run_episode", "run_tool_calls"]
