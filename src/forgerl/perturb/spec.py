"""What to perturb, how often and how much: the run-config side of the perturbation pipeline.

MiniMax found that more tools alone did not carry M2 to a new agent scaffold, while perturbing the
whole operational space did (M2_NOTES §5). The space is cut into seven dimensions; each gets a
`probability` (the chance that an episode has that dimension perturbed at all) and a `strength`
(0..1: how many edits, how much noise). Every default is off, so a config without a `[perturb]`
table trains exactly as before.

Held-out scaffolds are settings kept out of training (a chat format, a naming style, a response
style): training draws never produce them, and `held_out_scaffolds` turns each into an evaluation
scaffold that forces it, so the generalization gap is measured on something the policy never saw.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAMING_STYLES = ("synonym", "prefix", "camel", "pascal", "kebab", "upper", "coined")
"""How tool and parameter names are rewritten (perturb/naming.py); `coined` invents words, so names can
only be read from the prompt, not recalled."""
RESPONSE_STYLES = ("text", "json", "table", "kv", "xml")
"""How tool outputs are rendered (perturb/responses.py); `text` is the environment's own output."""
ERROR_STYLES = ("plain", "code", "json", "sentence")
"""How tool error messages are worded (perturb/responses.py); `plain` is the environment's own."""
CHAT_FORMATS = ("minimax_m2", "hermes", "json_tools")
"""The registered chat formats an episode may be rendered in (forgerl.chat.list_formats())."""

Dimension = Literal["tool_info", "tool_set", "system_prompt", "user_prompt", "chat_format", "environment",
                    "tool_responses"]
DIMENSIONS: tuple[Dimension, ...] = ("tool_info", "tool_set", "system_prompt", "user_prompt", "chat_format",
                                     "environment", "tool_responses")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class DimensionSpec(_Spec):
    probability: float = Field(0.0, ge=0, le=1)
    """Chance that an episode has this dimension perturbed (0 = off)."""
    strength: float = Field(0.5, ge=0, le=1)
    """How much is changed when it is: 0 = the lightest edit, 1 = every edit this dimension has."""


class ToolInfoSpec(DimensionSpec):
    """Renamed tools and parameters, rewritten descriptions, reordered/renested parameters, added optional ones."""

    naming_styles: list[str] = Field(default_factory=lambda: list(NAMING_STYLES))
    """Naming styles training may draw (held-out ones are removed from this list at draw time)."""


class ToolSetSpec(DimensionSpec):
    """Distractor tools, equivalent swaps (arguments as one JSON string), split and merged tools."""

    protected_tools: list[str] = Field(default_factory=lambda: ["submit_answer"])
    """Tools never split, merged or swapped (renaming still applies): the episode-ending submission."""


class SystemPromptSpec(DimensionSpec):
    """Persona, instruction wording and order, formatting rules, length."""


class UserPromptSpec(DimensionSpec):
    """Paraphrase templates, typos in non-essential words, irrelevant context, reordered constraints."""


class ChatFormatSpec(DimensionSpec):
    """The episode rendered in another registered chat format; the policy must write that format's calls."""

    formats: list[str] = Field(default_factory=lambda: list(CHAT_FORMATS))
    """Formats training may draw (the run's own format included; held-out ones are removed)."""


class EnvironmentSpec(DimensionSpec):
    """Latency, transient failures that need a retry, and rate limits on parallel calls (envs/noise.py)."""

    max_latency_s: float = Field(0.01, ge=0)
    """Upper bound of an injected delay; kept small so rollouts stay fast."""


class ToolResponseSpec(DimensionSpec):
    """JSON / text / table rendering, noise fields, truncation, reordered fields, error-message styles."""

    styles: list[str] = Field(default_factory=lambda: list(RESPONSE_STYLES))
    """Response styles training may draw (held-out ones are removed)."""


class HeldOutScaffolds(_Spec):
    """Settings kept out of training; each becomes one evaluation scaffold."""

    chat_formats: list[str] = Field(default_factory=lambda: ["json_tools"])
    """Chat formats never drawn in training."""
    naming_styles: list[str] = Field(default_factory=lambda: ["pascal"])
    """Naming styles never drawn in training."""
    response_styles: list[str] = Field(default_factory=lambda: ["table"])
    """Tool-response styles never drawn in training."""

    @model_validator(mode="after")
    def _known(self) -> HeldOutScaffolds:
        for field, known in (("chat_formats", CHAT_FORMATS), ("naming_styles", NAMING_STYLES),
                             ("response_styles", RESPONSE_STYLES)):
            unknown = [v for v in getattr(self, field) if v not in known]
            if unknown:
                raise ValueError(f"held_out.{field}: unknown {unknown}; choose from {list(known)}")
        return self


class PerturbSpec(_Spec):
    """Perturbation of the agent's operational space (M2_NOTES §5); a `[perturb]` table in the run config.
    Defaults: everything off."""

    tool_info: ToolInfoSpec = Field(default_factory=ToolInfoSpec)
    """Tool names, parameter names, descriptions and schemas."""
    tool_set: ToolSetSpec = Field(default_factory=ToolSetSpec)
    """Which tools exist and how their work is divided."""
    system_prompt: SystemPromptSpec = Field(default_factory=SystemPromptSpec)
    """The system prompt's persona, wording, order, rules and length."""
    user_prompt: UserPromptSpec = Field(default_factory=UserPromptSpec)
    """The task's phrasing."""
    chat_format: ChatFormatSpec = Field(default_factory=ChatFormatSpec)
    """The chat template."""
    environment: EnvironmentSpec = Field(default_factory=EnvironmentSpec)
    """Latency, transient failures, rate limits."""
    tool_responses: ToolResponseSpec = Field(default_factory=ToolResponseSpec)
    """How tool outputs and errors look."""
    held_out: HeldOutScaffolds = Field(default_factory=HeldOutScaffolds)
    """Settings training never draws (evaluated as held-out scaffolds)."""

    @property
    def active(self) -> bool:
        """True when any dimension can fire."""
        return any(self.dimension(d).probability > 0 for d in DIMENSIONS)

    def dimension(self, name: Dimension) -> DimensionSpec:
        return getattr(self, name)

    def _choices(self, name: str) -> tuple[DimensionSpec, list[str], tuple[str, ...]]:
        """(the dimension, its configured values, every known value) for a drawn setting."""
        if name == "naming_styles":
            return self.tool_info, self.tool_info.naming_styles, NAMING_STYLES
        if name == "response_styles":
            return self.tool_responses, self.tool_responses.styles, RESPONSE_STYLES
        if name == "chat_formats":
            return self.chat_format, self.chat_format.formats, CHAT_FORMATS
        raise KeyError(name)

    def allowed(self, name: Literal["naming_styles", "response_styles", "chat_formats"]) -> list[str]:
        """The values a draw may pick: the dimension's list minus the held-out ones."""
        return [v for v in self._choices(name)[1] if v not in getattr(self.held_out, name)]

    @model_validator(mode="after")
    def _check(self) -> PerturbSpec:
        for name in ("naming_styles", "response_styles", "chat_formats"):
            dim, values, known = self._choices(name)
            unknown = [v for v in values if v not in known]
            if unknown:
                raise ValueError(f"{name}: unknown {unknown}; choose from {list(known)}")
            if dim.probability > 0 and not self.allowed(name):  # type: ignore[arg-type]
                raise ValueError(f"every one of {values} is held out ({name}), so this dimension can never fire: "
                                 "allow at least one value or set its probability to 0")
        return self

    @classmethod
    def uniform(cls, probability: float = 0.5, strength: float = 0.5, **kwargs: object) -> PerturbSpec:
        """Every dimension at the same probability and strength (the experiment's perturbed arm)."""
        dims = {d: {"probability": probability, "strength": strength} for d in DIMENSIONS}
        return cls.model_validate({**dims, **kwargs})


class Scaffold(_Spec):
    """A named evaluation setting: a perturbation spec applied to every evaluated episode."""

    name: str
    spec: PerturbSpec = Field(default_factory=PerturbSpec)
    held_out: bool = False
    """True when the setting was kept out of training."""


def default_scaffold() -> Scaffold:
    """No perturbation: the run's own format, names, prompts and responses (in distribution)."""
    return Scaffold(name="default")


def held_out_scaffolds(spec: PerturbSpec) -> list[Scaffold]:
    """One scaffold per held-out setting, forcing that setting and nothing else."""
    out: list[Scaffold] = []
    none = HeldOutScaffolds(chat_formats=[], naming_styles=[], response_styles=[])
    for fmt in spec.held_out.chat_formats:
        s = PerturbSpec(chat_format=ChatFormatSpec(probability=1.0, formats=[fmt]), held_out=none)
        out.append(Scaffold(name=f"format={fmt}", spec=s, held_out=True))
    for style in spec.held_out.naming_styles:
        s = PerturbSpec(tool_info=ToolInfoSpec(probability=1.0, strength=0.0, naming_styles=[style]), held_out=none)
        out.append(Scaffold(name=f"naming={style}", spec=s, held_out=True))
    for style in spec.held_out.response_styles:
        s = PerturbSpec(tool_responses=ToolResponseSpec(probability=1.0, strength=0.0, styles=[style]), held_out=none)
        out.append(Scaffold(name=f"responses={style}", spec=s, held_out=True))
    return out


def scaffold_set(name: str, spec: PerturbSpec | None = None) -> list[Scaffold]:
    """`heldout` (default + every held-out setting), `default`, or `all` (also the training distribution)."""
    spec = spec or PerturbSpec.uniform()
    if name == "default":
        return [default_scaffold()]
    if name == "heldout":
        return [default_scaffold(), *held_out_scaffolds(spec)]
    if name == "all":
        return [default_scaffold(), Scaffold(name="train-perturbed", spec=spec), *held_out_scaffolds(spec)]
    raise ValueError(f"unknown scaffold set {name!r}; choose default, heldout or all")
