"""forgerl: train tool-using LLM agents with RL the way MiniMax-M2 was trained."""

__version__ = "0.1.0"
