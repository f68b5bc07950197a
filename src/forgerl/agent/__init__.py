"""The white-box agent: the interleaved-thinking tool loop, tool-call checking, context managers.

The transcript printer behind `forgerl rollout` is forgerl/cli/transcript.py (`run_demo`): presentation
lives with the commands, and importing the loop never pulls in rich.
"""

from forgerl.agent.context import ContextManager, DropOldToolOutputs
from forgerl.agent.loop import run_episode
from forgerl.agent.tools import ToolOutcome, argument_problems, run_tool_calls

__all__ = ["ContextManager", "DropOldToolOutputs", "ToolOutcome", "argument_problems", "run_episode", "run_tool_calls"]
